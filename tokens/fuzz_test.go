package tokens_test

import (
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/tokens"
)

// FuzzVerify mutates a freshly minted token by splicing: it replaces cut
// bytes at offset with insert. The ring's keys are new on every run, so the
// mutation, not a stored token, is what the corpus keeps. insert alone is
// also tried as a whole token. Neither may panic, and neither may verify
// unless it is the original token.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, "ES256")
	original := fx.mint(f, fx.claims())
	if _, err := fx.verifier.Verify(original); err != nil {
		f.Fatalf("Verify(original): %v", err)
	}
	f.Add(uint16(0), uint8(0), "")
	f.Add(uint16(len(original)-1), uint8(1), "B")
	f.Add(uint16(10), uint8(3), ".")
	f.Add(uint16(0), uint8(36), "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0")
	f.Add(uint16(len(original)), uint8(0), "==")

	f.Fuzz(func(t *testing.T, offset uint16, cut uint8, insert string) {
		at := min(int(offset), len(original))
		end := min(at+int(cut), len(original))
		mutated := original[:at] + insert + original[end:]
		for _, token := range []string{mutated, insert} {
			claims, err := fx.verifier.Verify(token)
			if token == original {
				if err != nil {
					t.Fatalf("Verify(original) = %v", err)
				}
				continue
			}
			if err == nil {
				t.Fatalf("Verify accepted a token that is not the minted one: %q (claims %+v)", token, claims)
			}
			if !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
			}
		}
	})
}
