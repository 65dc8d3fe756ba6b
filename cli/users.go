package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

func (c *commands) usersCommand() *cobra.Command {
	cmd := command("users", "Lists the users", cobra.NoArgs, true, func(cmd *cobra.Command, _ []string) error {
		status, _ := cmd.Flags().GetString("status")
		switch status {
		case "", store.StatusPending, store.StatusActive, store.StatusSuspended, store.StatusDenied:
		default:
			return fmt.Errorf("--status must be pending, active, suspended or denied, not %q", status)
		}
		return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
			users, err := allUsers(ctx, rt, store.UserFilter{Status: status})
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), users)
			}
			rows := make([][]string, 0, len(users))
			for _, u := range users {
				rows = append(rows, []string{u.ID, u.Email, u.Name, u.Role, u.Status, when(&u.CreatedAt), when(u.LastLoginAt)})
			}
			return table(cmd.OutOrStdout(), []string{"ID", "EMAIL", "NAME", "ROLE", "STATUS", "CREATED", "LAST SIGN-IN"}, rows)
		})
	})
	cmd.Flags().String("status", "", "Only users with this status: pending, active, suspended or denied")
	return cmd
}

// allUsers reads every page of users that f selects.
func allUsers(ctx context.Context, rt *core.Runtime, f store.UserFilter) ([]store.User, error) {
	users := []store.User{}
	f.Limit = 200
	for {
		page, next, err := rt.Store.ListUsers(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		users = append(users, page...)
		if next == "" {
			return users, nil
		}
		f.Cursor = next
	}
}

func (c *commands) roleCommand() *cobra.Command {
	cmd := command("role EMAIL|ID ROLE", "Gives a user a role", cobra.ExactArgs(2), true, func(cmd *cobra.Command, args []string) error {
		return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
			role := args[1]
			if !rt.Policy().RoleExists(role) {
				return fmt.Errorf("unknown role %q (the roles are %s)", role, roleNames(rt))
			}
			target, err := findUser(ctx, rt, args[0])
			if err != nil {
				return err
			}
			u, err := rt.SetUserRole(ctx, nil, core.Operator(), target, role)
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%s keeps the role %s: this change would leave no active admin", target.Email, target.Role)
			}
			if err != nil {
				return fmt.Errorf("setting the role of %s: %w", target.Email, err)
			}
			if asJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), u)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) now has the role %s (was %s)\n", u.Email, u.ID, u.Role, target.Role)
			return nil
		})
	})
	return cmd
}

// findUser is the user with the ID, or else the one user with the email
// (case-insensitive); an email that several users share (through several
// providers) needs the ID.
func findUser(ctx context.Context, rt *core.Runtime, idOrEmail string) (store.User, error) {
	if !strings.Contains(idOrEmail, "@") {
		u, err := rt.Store.GetUser(ctx, idOrEmail)
		if errors.Is(err, store.ErrNotFound) {
			return store.User{}, fmt.Errorf("no user with the ID %s", idOrEmail)
		}
		return u, err
	}
	candidates, err := allUsers(ctx, rt, store.UserFilter{Query: idOrEmail})
	if err != nil {
		return store.User{}, err
	}
	var found []store.User
	for _, u := range candidates {
		if strings.EqualFold(u.Email, idOrEmail) {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return store.User{}, fmt.Errorf("no user with the email %s (they appear once they have signed in)", idOrEmail)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, u := range found {
		ids[i] = u.ID + " (" + u.Provider + ")"
	}
	return store.User{}, fmt.Errorf("%d users have the email %s; give the ID of one: %s", len(found), idOrEmail, strings.Join(ids, ", "))
}

// roleNames are the roles of the current policy, lowest rank first.
func roleNames(rt *core.Runtime) string {
	ranks := rt.Policy().Roles()
	names := make([]string, 0, len(ranks))
	for name := range ranks {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(ranks[a], ranks[b]), strings.Compare(a, b))
	})
	return strings.Join(names, ", ")
}
