package modelreq

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
)

type globCase struct {
	pattern, name string
	want          bool
}

var globCases = []globCase{
	{"llama3", "llama3", true},
	{"llama3", "llama3.1", false},
	{"llama3*", "llama3", true},
	{"llama3*", "llama3.1:8b", true},
	{"llama3*", "llama3.1:8b-instruct-q4_K_M", true},
	{"llama3*", "llama2", false},
	{"llama3*", "Llama3", false},
	{"*", "org/model:tag", true},
	{"*", "", true},
	{"org/*", "org/model:tag", true},
	{"org/*", "org/team/model:tag", true},
	{"org/*", "other/model:tag", false},
	{"*:tag", "org/model:tag", true},
	{"*/model:*", "org/model:tag", true},
	{"org/model:?", "org/model:1", true},
	{"org/model:?", "org/model:10", false},
	{"qwen2.5:[0-9]b", "qwen2.5:7b", true},
	{"qwen2.5:[0-9]b", "qwen2.5:14b", false},
	{"qwen2.5:[!0-9]b", "qwen2.5:xb", true},
	{"{llama3,mistral}:*", "mistral:7b", true},
	{"{llama3,mistral}:*", "phi3:mini", false},
	{`gpt\*`, "gpt*", true},
	{`gpt\*`, "gpt-4o", false},
	{"[", "[", false}, // invalid pattern matches nothing
}

func TestMatchGlob(t *testing.T) {
	for _, tt := range globCases {
		t.Run(fmt.Sprintf("%s~%s", tt.pattern, tt.name), func(t *testing.T) {
			if got := MatchGlob(tt.pattern, tt.name); got != tt.want {
				t.Errorf("MatchGlob(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
			// The second call comes from the cache and must agree.
			if got := MatchGlob(tt.pattern, tt.name); got != tt.want {
				t.Errorf("cached MatchGlob(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

func TestValidGlob(t *testing.T) {
	for _, pattern := range []string{"llama3", "llama3*", "org/*:tag", "[a-z]?", "{a,b*}", `\[x\]`} {
		if err := ValidGlob(pattern); err != nil {
			t.Errorf("ValidGlob(%q) = %v, want nil", pattern, err)
		}
	}
	for _, pattern := range []string{"[", "[a-", "{a,b", `x\`, "[]"} {
		if err := ValidGlob(pattern); err == nil {
			t.Errorf("ValidGlob(%q) = nil, want an error", pattern)
		}
	}
}

// TestMatchGlobAgreesWithOPA evaluates the same cases with the Rego builtin
// the policy uses, so a pre-check can never contradict the policy.
func TestMatchGlobAgreesWithOPA(t *testing.T) {
	ctx := context.Background()
	query, err := rego.New(rego.Query("glob.match(input.pattern, null, input.name)")).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range globCases {
		rs, err := query.Eval(ctx, rego.EvalInput(map[string]string{"pattern": tt.pattern, "name": tt.name}))
		opaMatch := err == nil && rs.Allowed()
		if opaMatch != tt.want {
			t.Errorf("OPA glob.match(%q, null, %q) = %v (err %v), want %v", tt.pattern, tt.name, opaMatch, err, tt.want)
		}
		if got := MatchGlob(tt.pattern, tt.name); got != opaMatch {
			t.Errorf("MatchGlob(%q, %q) = %v, OPA glob.match = %v (err %v)", tt.pattern, tt.name, got, opaMatch, err)
		}
	}
}
