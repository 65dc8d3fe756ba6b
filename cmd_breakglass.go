package gatehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
)

// The command line (spec §11): `caddy gatehouse …` works on the configured
// store directly, also while the server is down, and is audited with the
// actor cli. This file registers the command and its break-glass seal.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gatehouse",
		Usage: "<command> [--config <path> [--adapter <name>]]",
		Short: "Works on Gatehouse's store directly",
		Long: `
Commands of Gatehouse that work on the configured store directly, also while
the server is down. Each takes --config (and --adapter) like caddy run.

  break-glass seal   makes a one-time code for break-glass emergency access
                     and prints it once; the store keeps only its hash`,
		CobraFunc: func(cmd *cobra.Command) {
			breakGlass := &cobra.Command{Use: "break-glass", Short: "Break-glass emergency access"}
			seal := &cobra.Command{
				Use:   "seal",
				Short: "Makes a sealed one-time code for break-glass emergency access and prints it once",
				Args:  cobra.NoArgs,
				RunE:  runBreakGlassSeal,
			}
			addConfigFlags(seal)
			breakGlass.AddCommand(seal)
			cmd.AddCommand(breakGlass)
		},
	})
}

// addConfigFlags adds the --config and --adapter flags of caddy run.
func addConfigFlags(cmd *cobra.Command) {
	cmd.Flags().StringP("config", "c", "", "Configuration file (default: the Caddyfile in the current directory)")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
}

func runBreakGlassSeal(cmd *cobra.Command, _ []string) error {
	opts, err := cliOptions(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	code, err := core.SealBreakGlassCode(ctx, opts)
	if err != nil {
		return fmt.Errorf("break-glass seal: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\n", code)
	fmt.Fprintln(cmd.ErrOrStderr(), "This one-time code is shown once; Gatehouse keeps only its hash. "+
		"Keep it sealed; anyone signed in may invoke emergency access with it, once.")
	return nil
}

// cliOptions loads the configuration as caddy run does and returns the
// gatehouse app's options, placeholders replaced and defaults applied.
func cliOptions(cmd *cobra.Command) (core.Options, error) {
	configFile, _ := cmd.Flags().GetString("config")
	adapter, _ := cmd.Flags().GetString("adapter")
	raw, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return core.Options{}, err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return core.Options{}, fmt.Errorf("reading the configuration: %w", err)
	}
	app := new(App)
	section, ok := cfg.Apps["gatehouse"]
	if !ok {
		return core.Options{}, errors.New("the configuration has no gatehouse app (the gatehouse global option)")
	}
	if err := json.Unmarshal(section, app); err != nil {
		return core.Options{}, fmt.Errorf("reading the gatehouse app: %w", err)
	}
	app.expandPlaceholders()
	app.applyDefaults()
	if err := app.Validate(); err != nil {
		return core.Options{}, err
	}
	return app.Options, nil
}
