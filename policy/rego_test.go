package policy

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRegoUnitTests runs rego/*_test.rego exactly as `opa test policy/rego` would.
func TestRegoUnitTests(t *testing.T) {
	modules, store, err := tester.Load([]string{"rego"}, nil)
	if err != nil {
		t.Fatalf("load rego: %v", err)
	}
	results, err := tester.NewRunner().
		SetStore(store).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		RunTests(t.Context(), nil)
	if err != nil {
		t.Fatalf("run rego tests: %v", err)
	}
	ran := 0
	for r := range results {
		ran++
		t.Run(r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
			case !r.Pass():
				t.Errorf("%s.%s: %s (%s)", r.Package, r.Name, "FAIL", r.Location)
			}
		})
	}
	if ran == 0 {
		t.Fatal("no Rego tests ran")
	}
}
