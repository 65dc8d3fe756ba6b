package tests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestXcaddyBuildsGatehouse: the documented `xcaddy build --with` makes a
// Caddy with the three Gatehouse modules whose Caddyfile directives adapt.
// xcaddy is pinned as a Go tool. The module is named at the version a local
// replacement stands for, so Go does not look the path up (this machine
// reaches no VCS host); with a published module `--with
// github.com/gatehouse/gatehouse` alone works.
func TestXcaddyBuildsGatehouse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a whole Caddy; -short skips it")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "tool", "xcaddy", "build", "v2.11.9",
		"--with", "github.com/gatehouse/gatehouse@v0.0.0-00010101000000-000000000000="+root, "--output", bin)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("xcaddy build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	for _, m := range []string{"gatehouse", "http.handlers.gatehouse", "http.handlers.gatehouse_api"} {
		if !strings.Contains("\n"+string(out), "\n"+m+"\n") {
			t.Errorf("the xcaddy build lacks module %s:\n%s", m, out)
		}
	}
	adapted, err := exec.Command(bin, "adapt", "--config", filepath.Join(root, "Caddyfile.example"), "--adapter", "caddyfile").CombinedOutput()
	if err != nil || !strings.Contains(string(adapted), `"handler":"gatehouse"`) {
		t.Fatalf("adapting Caddyfile.example with the xcaddy build: %v\n%.2000s", err, adapted)
	}
}
