package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevIdPRefusesARemoteListener: dev_idp signs anyone in without a
// password, so Gatehouse does not start with it while the site listens on
// every interface (where anyone on the network can send Host: localhost)
// — unless the operator says allow_remote; bound to 127.0.0.1 it starts.
func TestDevIdPRefusesARemoteListener(t *testing.T) {
	for _, tc := range []struct {
		name, bind, devIdP string
		starts             bool
	}{
		{"every interface", "", "", false},
		{"every interface, allow_remote", "", "\t\t\tallow_remote\n", true},
		{"bound to loopback", "\tbind 127.0.0.1\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			port := freePort(t)
			cfg := fmt.Sprintf("{\n\tadmin off\n\tgatehouse {\n\t\tpublic_url http://localhost:%d\n\t\tstore sqlite %s\n\t\tdev_idp {\n%s\t\t\tuser a@example.com\n\t\t}\n\t}\n}\n"+
				"http://localhost:%d {\n%s\tgatehouse_api\n\tgatehouse\n\trespond ok\n}\n",
				port, filepath.Join(dir, "data", "g.db"), tc.devIdP, port, tc.bind)
			path := filepath.Join(dir, "Caddyfile")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
			cmd.Dir = dir
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() {
				_ = cmd.Wait()
				close(exited)
			}()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			healthy := func() bool {
				r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/health", port))
				if err != nil {
					return false
				}
				r.Body.Close()
				return r.StatusCode == http.StatusOK
			}
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-exited:
					if tc.starts {
						t.Fatalf("caddy exited:\n%s", out.String())
					}
					if !strings.Contains(out.String(), "dev_idp signs anyone in without a password") || !strings.Contains(out.String(), "bind 127.0.0.1") {
						t.Fatalf("caddy refused without saying why and what to do:\n%s", out.String())
					}
					return
				default:
				}
				if healthy() {
					if !tc.starts {
						t.Fatalf("Gatehouse started with dev_idp on every interface:\n%s", out.String())
					}
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Fatalf("caddy neither started nor exited within 20s:\n%s", out.String())
		})
	}
}
