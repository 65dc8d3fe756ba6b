package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
)

// secretSuffix names the copy of the master secret file beside the backup.
const secretSuffix = ".key"

func (c *commands) backupCommand() *cobra.Command {
	cmd := command("backup", "Writes a consistent copy of the store, and of the master secret file", cobra.NoArgs, false,
		func(cmd *cobra.Command, _ []string) error {
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				return errors.New("--out FILE is required")
			}
			opts, err := c.load(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// The secret first: a store copy without it opens no key.
			if err := backupSecret(cmd, opts, out+secretSuffix); err != nil {
				return err
			}
			if opts.Store.Driver == "postgres" {
				return pgDump(ctx, cmd, opts.Store.DSN, out)
			}
			if err := core.BackupSQLite(ctx, opts, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store         %s (a copy of %s)\n", out, opts.Store.DSN)
			return nil
		})
	cmd.Flags().String("out", "", "The file to write (must not exist); the master secret file is copied to FILE"+secretSuffix)
	return cmd
}

// backupSecret copies the master secret file to path (owner-only), or says
// that the secret is in the configuration: without it, a copy of the store
// holds no usable signing key, and every token is lost.
func backupSecret(cmd *cobra.Command, opts core.Options, path string) error {
	if opts.Secret != "" {
		fmt.Fprintln(cmd.OutOrStdout(), "master secret set in the configuration (secret): keep a copy of it with the backup, apart from it")
		return nil
	}
	in, err := os.Open(opts.SecretFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the master secret file %s does not exist (has the server started once?)", opts.SecretFile)
	}
	if err != nil {
		return fmt.Errorf("master secret: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("master secret copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("master secret copy: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("master secret copy: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "master secret %s (a copy of %s; keep it apart from the store copy)\n", path, opts.SecretFile)
	return nil
}

// pgDump runs pg_dump on the configured PostgreSQL store when it is on the
// PATH, and otherwise fails with the command to run. The password goes
// through PGPASSWORD, not the command line, which other users can read.
func pgDump(ctx context.Context, cmd *cobra.Command, dsn, out string) error {
	args, password, err := pgDumpArgs(dsn, out)
	if err != nil {
		return err
	}
	path, err := exec.LookPath("pg_dump")
	if err != nil {
		env := ""
		if password != "" {
			env = "PGPASSWORD='<the password of the store URL>' "
		}
		return fmt.Errorf("a PostgreSQL store is backed up with pg_dump, which is not on the PATH; install it (the postgresql-client package) and run:\n  %spg_dump %s",
			env, strings.Join(quoteAll(args), " "))
	}
	dump := exec.CommandContext(ctx, path, args...)
	dump.Env = os.Environ()
	if password != "" {
		dump.Env = append(dump.Env, "PGPASSWORD="+password)
	}
	dump.Stdout, dump.Stderr = cmd.ErrOrStderr(), cmd.ErrOrStderr()
	if err := dump.Run(); err != nil {
		return fmt.Errorf("pg_dump: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "store         %s (pg_dump --format=custom; restore with pg_restore)\n", out)
	return nil
}

// pgDumpArgs are pg_dump's arguments for the store URL, without its
// password; pgx's search_path becomes --schema, which libpq does not take
// in a URL.
func pgDumpArgs(dsn, out string) (args []string, password string, err error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, "", fmt.Errorf("backup: the store's URL is not a postgres:// URL")
	}
	if u.User != nil {
		password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
	}
	args = []string{"--format=custom", "--file=" + out}
	q := u.Query()
	if schema := q.Get("search_path"); schema != "" {
		args = append(args, "--schema="+schema)
		q.Del("search_path")
		u.RawQuery = q.Encode()
	}
	return append(args, "--dbname="+u.String()), password, nil
}

// quoteAll quotes each argument for a POSIX shell.
func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}
