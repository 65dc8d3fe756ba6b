package gatehouse

import (
	"encoding/json"
	"errors"
	"fmt"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/cli"
	"github.com/gatehouse/gatehouse/core"
)

// The command line (spec §11): `caddy gatehouse …` works on the configured
// store directly, also while the server is down, and is audited with the
// actor cli. This file registers it; the commands are in package cli.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gatehouse",
		Usage: "<command> [--config <path> [--adapter <name>]]",
		Short: "Works on Gatehouse's store directly",
		Long: `
Commands of Gatehouse that work on the configured store directly, also while
the server is down; what they change is audited with the actor cli. Each takes
--config (and --adapter) like caddy run.

  users [--status S]          lists the users
  requests [--status S]       lists access requests (pending by default)
  approve ID [--role R]       approves a pending access request
  deny ID                     denies a pending access request
  role EMAIL|ID ROLE          gives a user a role
  token create --kind system  creates a system token and prints it once
  keys rotate [--emergency]   rotates the signing keys
  audit export [--since T]    prints the audit log as JSON lines
  backup --out FILE           copies the store and the master secret file
  break-glass seal            makes a one-time code for break-glass emergency
                              access and prints it once`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(cli.Commands(cliOptions)...)
		},
	})
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
