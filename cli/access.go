package cli

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

// maxComment is the longest review comment, as the API takes it.
const maxComment = 2000

func (c *commands) requestsCommand() *cobra.Command {
	cmd := command("requests", "Lists access requests (pending unless --status says otherwise)", cobra.NoArgs, true,
		func(cmd *cobra.Command, _ []string) error {
			status, _ := cmd.Flags().GetString("status")
			switch status {
			case store.RequestPending, store.RequestApproved, store.RequestDenied, store.RequestExpired, "all":
			default:
				return fmt.Errorf("--status must be pending, approved, denied, expired or all, not %q", status)
			}
			return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
				reqs, err := rt.Store.ListAccessRequests(ctx, status)
				if err != nil {
					return fmt.Errorf("listing access requests: %w", err)
				}
				if asJSON(cmd) {
					if reqs == nil {
						reqs = []store.AccessRequest{}
					}
					return printJSON(cmd.OutOrStdout(), reqs)
				}
				rows := make([][]string, 0, len(reqs))
				for _, r := range reqs {
					role := r.RequestedRole
					if r.Role != "" {
						role = r.Role
					}
					rows = append(rows, []string{r.ID, r.User.Email, r.Name, role, r.Status, when(&r.CreatedAt), r.Purpose})
				}
				return table(cmd.OutOrStdout(), []string{"ID", "EMAIL", "NAME", "ROLE", "STATUS", "CREATED", "PURPOSE"}, rows)
			})
		})
	cmd.Flags().String("status", store.RequestPending, "pending, approved, denied, expired or all")
	return cmd
}

func (c *commands) approveCommand() *cobra.Command {
	cmd := command("approve ID", "Approves a pending access request", cobra.ExactArgs(1), true, func(cmd *cobra.Command, args []string) error {
		return c.decide(cmd, args[0], true)
	})
	cmd.Flags().String("role", "user", "The role to grant")
	cmd.Flags().String("comment", "", "A comment for the requester")
	return cmd
}

func (c *commands) denyCommand() *cobra.Command {
	cmd := command("deny ID", "Denies a pending access request", cobra.ExactArgs(1), true, func(cmd *cobra.Command, args []string) error {
		return c.decide(cmd, args[0], false)
	})
	cmd.Flags().String("comment", "", "A comment for the requester")
	return cmd
}

// decide approves or denies request id as the operator: the checks of the
// API's review but the policy's (the operator may grant any role).
func (c *commands) decide(cmd *cobra.Command, id string, approve bool) error {
	comment, _ := cmd.Flags().GetString("comment")
	if utf8.RuneCountInString(comment) > maxComment {
		return fmt.Errorf("--comment must be at most %d characters", maxComment)
	}
	return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
		d := core.AccessDecision{Approve: approve, Comment: comment, Now: time.Now().UTC()}
		if approve {
			d.Role, _ = cmd.Flags().GetString("role")
			if !rt.Policy().RoleExists(d.Role) {
				return fmt.Errorf("unknown role %q (the roles are %s)", d.Role, roleNames(rt))
			}
		}
		req, err := rt.Store.GetAccessRequest(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no access request with the ID %s (see caddy gatehouse requests)", id)
		}
		if err != nil {
			return fmt.Errorf("reading access request %s: %w", id, err)
		}
		if req.Status != store.RequestPending {
			return fmt.Errorf("access request %s of %s is not pending: it was already %s", id, req.User.Email, req.Status)
		}
		decided, err := rt.DecideAccess(ctx, nil, core.Operator(), req, d)
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("access request %s of %s was decided by someone else in the meantime", id, req.User.Email)
		}
		if err != nil {
			return err
		}
		if asJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), decided)
		}
		if approve {
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s: %s is active with the role %s\n", id, req.User.Email, d.Role)
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "denied %s: %s is denied\n", id, req.User.Email)
		}
		return nil
	})
}
