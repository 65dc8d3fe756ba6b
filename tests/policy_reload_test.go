package tests

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPolicyReloadsWhenItsFileChanges: an edited policy file takes effect
// without `caddy reload --force` (which Caddy would answer "config is
// unchanged"): within about 2 s a request that was refused is let through
// and one that was let through is refused. A broken edit keeps the running
// policy and logs the compiler's file:line (spec §7a).
func TestPolicyReloadsWhenItsFileChanges(t *testing.T) {
	in := startInstance(t, instanceConfig{
		extraGlobal: "\t\tpolicy rules.rego",
		files:       map[string]string{"rules.rego": "package gatehouse.ext\n\ndeny contains \"closed: /a\" if input.request.path == \"/a\"\n"},
	})
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(in.dir, "rules.rego"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bobC := activeClient(t, in, bob)
	expectProblem(t, bobC.get("/a"), http.StatusForbidden, "forbidden")
	if r := bobC.get("/b"); r.StatusCode != http.StatusOK {
		t.Fatalf("/b before the edit: %d %s", r.StatusCode, r.body)
	}

	write("package gatehouse.ext\n\ndeny contains \"closed: /b\" if input.request.path == \"/b\"\n")
	took := waitFor(t, 2500*time.Millisecond, "the edited policy", func() string {
		if r := bobC.get("/a"); r.StatusCode != http.StatusOK {
			return "/a: " + r.Status
		}
		if r := bobC.get("/b"); r.StatusCode != http.StatusForbidden {
			return "/b: " + r.Status
		}
		return ""
	})
	t.Logf("the edited policy decided after %s", took)
	expectProblem(t, bobC.get("/b"), http.StatusForbidden, "forbidden")

	write("package gatehouse.ext\n\ndeny contains msg if {\n\tmsg := \n}\n")
	time.Sleep(2500 * time.Millisecond) // more than two looks at the file
	if r := bobC.get("/a"); r.StatusCode != http.StatusOK {
		t.Fatalf("/a after a broken edit: %d %s", r.StatusCode, r.body)
	}
	expectProblem(t, bobC.get("/b"), http.StatusForbidden, "forbidden")

	in.stop() // the logs are complete once the process has exited
	logs := in.logs.String()
	if !strings.Contains(logs, `"policy.reloaded"`) {
		t.Errorf("no policy.reloaded event in the log:\n%s", logs)
	}
	var broken []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"error"`) && strings.Contains(line, "rules.rego:5") {
			broken = append(broken, line)
		}
	}
	if len(broken) != 1 {
		t.Fatalf("want one error naming rules.rego:5, got %d:\n%s", len(broken), logs)
	}
}
