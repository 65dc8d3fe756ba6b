// Package cli is Gatehouse's command line (spec §11), `caddy gatehouse …`:
// commands that work on the configured store directly, also while the
// server is down. Each opens a runtime of its own (core.Open, no workers)
// and changes authority through core, as the actor cli (core.Operator), so
// that what the API checks and writes with a change holds here too; the
// servers learn of it through Redis when it is configured, else at their
// next read of the store (within a second). The module root registers the
// commands and loads the configuration; nothing else imports this package.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse/gatehouse/core"
)

// LoadOptions reads the gatehouse app's options from the configuration the
// command's --config and --adapter flags name, as caddy run does.
type LoadOptions func(cmd *cobra.Command) (core.Options, error)

// timeout bounds one command's work on the store.
const timeout = time.Minute

// Commands are the subcommands of `caddy gatehouse`.
func Commands(load LoadOptions) []*cobra.Command {
	c := &commands{load: load}
	return []*cobra.Command{
		c.usersCommand(),
		c.requestsCommand(),
		c.approveCommand(),
		c.denyCommand(),
		c.roleCommand(),
		c.tokenCommand(),
		c.keysCommand(),
		c.auditCommand(),
		c.backupCommand(),
		c.breakGlassCommand(),
	}
}

type commands struct {
	load LoadOptions
}

// AddConfigFlags adds the --config and --adapter flags of caddy run.
func AddConfigFlags(cmd *cobra.Command) {
	cmd.Flags().StringP("config", "c", "", "Configuration file (default: the Caddyfile in the current directory)")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
}

// command is a subcommand with the configuration flags, and --json when it
// prints something a script may read.
func command(use, short string, args cobra.PositionalArgs, withJSON bool, run func(*cobra.Command, []string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: args, RunE: run}
	AddConfigFlags(cmd)
	if withJSON {
		cmd.Flags().Bool("json", false, "Print JSON instead of a table")
	}
	return cmd
}

// withRuntime opens a runtime on the configured store, runs fn with it as
// the operator, announces what fn changed and closes the runtime.
func (c *commands) withRuntime(cmd *cobra.Command, fn func(ctx context.Context, rt *core.Runtime) error) error {
	opts, err := c.load(cmd)
	if err != nil {
		return err
	}
	// The runtime's own warnings (a failed announcement, a key it had to
	// make) are worth a line on stderr; the development provider's banner
	// at every start is not.
	opts.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), zapcore.ErrorLevel))
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	rt, err := core.Open(ctx, opts)
	if err != nil {
		return fmt.Errorf("opening gatehouse's store: %w", err)
	}
	defer rt.Close()
	if err := fn(ctx, rt); err != nil {
		return err
	}
	if err := rt.FlushAnnouncements(ctx); err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", err)
	}
	return nil
}

// asJSON reports whether --json was given.
func asJSON(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, in aligned columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i, cell := range r {
			if cell == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// when formats a time for a table.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
