package guard

import (
	"go/build"
	"strings"
	"testing"
)

// TestGuardImportsNoHTTPAPIOrPages: the guard answers through the refusal
// package; the API and the pages are wired in by the Caddy module.
func TestGuardImportsNoHTTPAPIOrPages(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasSuffix(imp, "/gatehouse/api") || strings.HasSuffix(imp, "/gatehouse/pages") || strings.HasSuffix(imp, "/gatehouse/actions") {
			t.Errorf("guard imports %s", imp)
		}
	}
}
