package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// validateConfig is a whole Caddyfile around one gatehouse block.
func validateConfig(gatehouse string) string {
	return fmt.Sprintf(`{
	admin off
	gatehouse {
		public_url http://127.0.0.1:1
		dev_idp {
			user a@example.com
		}
%s
	}
}
http://127.0.0.1:1 {
	gatehouse_api
	gatehouse
	respond ok
}
`, gatehouse)
}

// caddyValidate runs `caddy validate` on a Caddyfile written to its own
// directory, from workDir (where a relative store would go), with Caddy's own
// state elsewhere. It returns the output and the exit code.
func caddyValidate(t *testing.T, workDir, caddyfile string, files map[string]string) (string, int) {
	t.Helper()
	cfgDir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(cfgDir, "Caddyfile")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(caddyfile, "{cfg}", cfgDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = workDir
	caddyHome := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+caddyHome, "XDG_DATA_HOME="+caddyHome, "XDG_CONFIG_HOME="+caddyHome)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("caddy validate: %v\n%s", err, out)
	return "", 0
}

// TestValidateWritesNothingWithSQLite: `caddy validate` compiles the policy
// but creates no store, no secret and no key (spec §7a): the directory the
// store would live in stays empty, with the default store and with an
// explicit one.
func TestValidateWritesNothingWithSQLite(t *testing.T) {
	rules := "package gatehouse.ext\n\ndeny contains \"closed\" if input.request.path == \"/closed\"\n"
	for _, tc := range []struct{ name, store string }{
		{"default store", ""},
		{"explicit store", "\t\tstore sqlite {work}/db/gatehouse.db\n\t\tsecret_file {work}/keys/gatehouse.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			cfg := validateConfig(strings.ReplaceAll(tc.store, "{work}", work) + "\n\t\tpolicy {cfg}/rules.rego")
			out, code := caddyValidate(t, work, cfg, map[string]string{"rules.rego": rules})
			if code != 0 || !strings.Contains(out, "Valid configuration") {
				t.Fatalf("caddy validate: exit %d\n%s", code, out)
			}
			var written []string
			filepath.WalkDir(work, func(p string, d os.DirEntry, err error) error {
				if p != work {
					written = append(written, strings.TrimPrefix(p, work+"/"))
				}
				return nil
			})
			if len(written) > 0 {
				t.Fatalf("caddy validate wrote %v", written)
			}
		})
	}
}

// TestValidateMigratesNothingInPostgres: against `store postgres`,
// `caddy validate` creates no table (it would otherwise migrate a
// production database).
func TestValidateMigratesNothingInPostgres(t *testing.T) {
	pg := newPrivatePostgres(t)
	cfg := validateConfig("\t\tstore postgres " + pg.URL + "\n\t\tsecret this-is-a-shared-test-secret-of-40-chars")
	out, code := caddyValidate(t, t.TempDir(), cfg, nil)
	if code != 0 || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("caddy validate: exit %d\n%s", code, out)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_schema || '.' || table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) > 0 {
		t.Fatalf("caddy validate created tables %v", tables)
	}
}

// TestValidateReportsConfigurationErrors: what Provision checks — the
// directives and the policy, compiled — still fails `caddy validate` with
// exit code 1 and a message that names the cause.
func TestValidateReportsConfigurationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, gatehouse string
		files           map[string]string
		want            []string
	}{
		{
			name:      "policy that does not compile",
			gatehouse: "\t\tpolicy {cfg}/broken.rego",
			files:     map[string]string{"broken.rego": "package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := \n}\n"},
			want:      []string{"policy", "broken.rego:5"},
		},
		{
			name:      "missing policy file",
			gatehouse: "\t\tpolicy {cfg}/absent.rego",
			want:      []string{"policy path", "absent.rego"},
		},
		{
			name:      "postgres without a secret",
			gatehouse: "\t\tstore postgres postgres://127.0.0.1:1/none",
			want:      []string{"secret is required with store postgres"},
		},
		{
			name:      "short secret",
			gatehouse: "\t\tsecret too-short",
			want:      []string{"secret must be at least 32 characters"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			out, code := caddyValidate(t, work, validateConfig(tc.gatehouse), tc.files)
			if code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			if entries, _ := os.ReadDir(work); len(entries) > 0 {
				t.Errorf("caddy validate wrote %v", entries)
			}
		})
	}
}
