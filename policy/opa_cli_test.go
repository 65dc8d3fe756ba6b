package policy

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// minCoverage is the share of authz.rego (in %) that the Rego tests must
// reach; only the default decision, which the else chain never leaves to,
// is uncovered.
const minCoverage = 98

// opaCLI runs the OPA CLI pinned in go.mod (`go tool opa`) and returns its
// output, failing the test with that output when it exits non-zero.
func opaCLI(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "opa"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("opa %v: %v\n%s%s", args, err, out, stderr)
	}
	return out
}

// TestOPAFormat: the shipped policy is as `opa fmt` writes it.
func TestOPAFormat(t *testing.T) {
	opaCLI(t, "fmt", "--fail", "--list", "rego")
}

// TestOPACheckStrict: the shipped policy passes `opa check --strict`
// (no unused variables, imports or arguments, no deprecated built-ins).
func TestOPACheckStrict(t *testing.T) {
	opaCLI(t, "check", "--strict", "rego")
}

// TestOPATestCoverage: `opa test` passes on the shipped policy and its tests
// cover the rules of authz.rego.
func TestOPATestCoverage(t *testing.T) {
	out := opaCLI(t, "test", "--fail-on-empty", "--coverage", "rego")
	var report struct {
		Files map[string]struct {
			Coverage   float64 `json:"coverage"`
			NotCovered []struct {
				Start struct {
					Row int `json:"row"`
				} `json:"start"`
			} `json:"not_covered"`
		} `json:"files"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("reading the coverage report: %v\n%s", err, out)
	}
	authz, ok := report.Files["rego/authz.rego"]
	if !ok {
		t.Fatalf("no coverage for rego/authz.rego:\n%s", out)
	}
	t.Logf("opa test coverage of authz.rego: %.1f%%", authz.Coverage)
	if authz.Coverage < minCoverage {
		var rows []int
		for _, r := range authz.NotCovered {
			rows = append(rows, r.Start.Row)
		}
		t.Fatalf("authz.rego coverage %.1f%% < %d%%; lines not covered: %v", authz.Coverage, minCoverage, rows)
	}
}
