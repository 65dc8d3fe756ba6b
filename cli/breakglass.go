package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
)

func (c *commands) breakGlassCommand() *cobra.Command {
	breakGlass := &cobra.Command{Use: "break-glass", Short: "Break-glass emergency access"}
	seal := command("seal", "Makes a sealed one-time code for break-glass emergency access and prints it once", cobra.NoArgs, false,
		func(cmd *cobra.Command, _ []string) error {
			opts, err := c.load(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			code, err := core.SealBreakGlassCode(ctx, opts)
			if err != nil {
				return fmt.Errorf("break-glass seal: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", code)
			fmt.Fprintln(cmd.ErrOrStderr(), "This one-time code is shown once; Gatehouse keeps only its hash. "+
				"Keep it sealed; anyone signed in may invoke emergency access with it, once.")
			return nil
		})
	breakGlass.AddCommand(seal)
	return breakGlass
}
