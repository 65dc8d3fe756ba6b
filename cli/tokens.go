package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/keys"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/store"
)

// maxName is the longest token name, as the API takes it.
const maxName = 200

// createdToken is the --json answer of token create: the API's shape.
type createdToken struct {
	store.APIToken
	Role  string `json:"role"`
	Token string `json:"token"`
}

func (c *commands) tokenCommand() *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "API tokens"}
	create := command("create", "Creates a system token and prints it once", cobra.NoArgs, true, func(cmd *cobra.Command, _ []string) error {
		kind, _ := cmd.Flags().GetString("kind")
		name, _ := cmd.Flags().GetString("name")
		role, _ := cmd.Flags().GetString("role")
		scope, _ := cmd.Flags().GetStringSlice("scope")
		models, _ := cmd.Flags().GetStringSlice("models")
		ttl, _ := cmd.Flags().GetString("ttl")
		switch {
		case kind != store.TokenSystem:
			return fmt.Errorf("--kind must be system: personal and user tokens are made by a signed-in person, on the account page or POST /api/tokens")
		case name == "" || utf8.RuneCountInString(name) > maxName:
			return fmt.Errorf("--name is required and at most %d characters", maxName)
		}
		for _, m := range models {
			if err := modelreq.ValidGlob(m); err != nil || m == "" {
				return fmt.Errorf("model pattern %q is not a valid glob", m)
			}
		}
		life, err := core.ParseLifetime(ttl)
		if err != nil {
			return fmt.Errorf("--ttl: %w", err)
		}
		return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
			if !rt.Policy().RoleExists(role) {
				return fmt.Errorf("unknown role %q (the roles are %s)", role, roleNames(rt))
			}
			allowed, err := rt.Policy().Permissions(ctx, role)
			if err != nil {
				return fmt.Errorf("the permissions of %s: %w", role, err)
			}
			raw, meta, err := rt.CreateToken(ctx, nil, core.Operator(), core.NewToken{
				Name: name, Kind: store.TokenSystem, Permissions: scope, Models: models, ExpiresIn: life,
				Allowed: allowed, Role: role,
			})
			if errors.Is(err, core.ErrTokenRequest) {
				return errors.New(strings.TrimPrefix(err.Error(), core.ErrTokenRequest.Error()+": "))
			}
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), createdToken{APIToken: meta, Role: role, Token: raw})
			}
			fmt.Fprintln(cmd.OutOrStdout(), raw)
			fmt.Fprintf(cmd.ErrOrStderr(), "system token %s %q (role %s; %s), expires %s.\n"+
				"It is shown once; Gatehouse keeps only its metadata. Revoke it with DELETE /api/tokens/%s.\n",
				meta.ID, meta.Name, role, strings.Join(meta.Scope, " "), when(&meta.ExpiresAt), meta.ID)
			return nil
		})
	})
	create.Flags().String("kind", "", "The kind of token: system (required)")
	create.Flags().String("name", "", "The token's name, shown in the token lists (required)")
	create.Flags().String("role", "admin", "The role the token acts with")
	create.Flags().StringSlice("scope", nil, "Its permissions, comma-separated (default: all of the role's)")
	create.Flags().StringSlice("models", nil, "The model patterns it may use, comma-separated (default: the role's)")
	create.Flags().String("ttl", "", "Its life, such as 720h or 90d (default: the longest for system tokens)")
	token.AddCommand(create)
	return token
}

func (c *commands) keysCommand() *cobra.Command {
	keysCmd := &cobra.Command{Use: "keys", Short: "Gatehouse's signing keys"}
	rotate := command("rotate", "Rotates the signing keys: the published next key signs from now", cobra.NoArgs, true,
		func(cmd *cobra.Command, _ []string) error {
			emergency, _ := cmd.Flags().GetBool("emergency")
			return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
				rot, err := rt.RotateKeys(ctx, nil, core.Operator(), emergency)
				var notReady *keys.NotReadyError
				if errors.As(err, &notReady) {
					return fmt.Errorf("the next signing key %s is in the JWKS since %s and can sign from %s (key_prepublish %s), "+
						"when verifiers that cache the JWKS have it; rotate again then, or with --emergency to replace the key "+
						"at once and revoke every token it signed",
						notReady.KID, notReady.PublishedAt.UTC().Format(time.RFC3339), notReady.ReadyAt.UTC().Format(time.RFC3339),
						notReady.ReadyAt.Sub(notReady.PublishedAt))
				}
				if err != nil {
					return fmt.Errorf("rotating the signing keys: %w", err)
				}
				if asJSON(cmd) {
					return printJSON(cmd.OutOrStdout(), map[string]any{
						"kid": rot.KID, "next_kid": rot.NextKID, "next_ready_at": rot.NextReadyAt.UTC(), "emergency": emergency,
						"retired": rot.Retired, "withdrawn": rot.Withdrawn, "revoked_tokens": rot.RevokedTokens,
					})
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "signing key   %s\nnext key      %s (can sign from %s)\n", rot.KID, rot.NextKID, when(&rot.NextReadyAt))
				if len(rot.Retired) > 0 {
					fmt.Fprintf(out, "retired       %s (published until their tokens expire)\n", strings.Join(rot.Retired, ", "))
				}
				if emergency {
					fmt.Fprintf(out, "withdrawn     %s\nrevoked       %d tokens\n", strings.Join(rot.Withdrawn, ", "), rot.RevokedTokens)
				}
				return nil
			})
		})
	rotate.Flags().Bool("emergency", false, "Replace the keys at once: the old keys leave the JWKS and every token they signed is revoked")
	keysCmd.AddCommand(rotate)
	return keysCmd
}
