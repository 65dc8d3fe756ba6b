package tokens_test

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/tokens"
)

func TestParseBearer(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer eyJh.eyJz.c2ln", "eyJh.eyJz.c2ln", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{"Bearer   abc", "abc", true}, // RFC 6750: 1*SP
		{"Bearer a-._~+/Z9", "a-._~+/Z9", true},
		{"Bearer abc==", "abc==", true},
		{"Bearer abcdefghijklmnopq==", "abcdefghijklmnopq==", true},
		{"Bearer abcdefgh========", "abcdefgh========", true},

		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false},
		{"Bearer abc ", "", false},
		{" Bearer abc", "", false},
		{"Bearer abc def", "", false},
		{"Bearer abc,def", "", false},
		{"Bearer ==", "", false},
		{"Bearer a=b", "", false},
		{"Bearer abcdefgh=ijklmnop", "", false},
		{"Bearer abcdefghijklm op", "", false},
		{"Bearer abcdefghijklmnop\x7f", "", false},
		{"Bearer abc\n", "", false},
		{"Bearer ab\x00c", "", false},
		{"Bearer abcé", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer, abc", "", false},
		{"Token abc", "", false},
		{"Bearerx abc", "", false},
	} {
		token, ok := tokens.ParseBearer(tc.header)
		if token != tc.token || ok != tc.ok {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tc.header, token, ok, tc.token, tc.ok)
		}
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, h := range []string{"Bearer abc", "bearer a.b.c", "Bearer  x==", "Basic x", "Bearer a b", "Bearer \t"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := tokens.ParseBearer(header)
		if !ok {
			if token != "" {
				t.Fatalf("ParseBearer(%q) = %q with ok=false", header, token)
			}
			return
		}
		if token == "" || !strings.HasSuffix(header, token) || !strings.EqualFold(header[:7], "Bearer ") {
			t.Fatalf("ParseBearer(%q) = %q, not the token after the scheme", header, token)
		}
		if strings.TrimLeft(header[7:], " ") != token {
			t.Fatalf("ParseBearer(%q) = %q: something besides spaces was dropped", header, token)
		}
		if strings.ContainsAny(token, " \t\r\n,\"\\") {
			t.Fatalf("ParseBearer(%q) = %q with a separator inside", header, token)
		}
		if again, ok := tokens.ParseBearer("Bearer " + token); !ok || again != token {
			t.Fatalf("ParseBearer is not stable on %q", token)
		}
	})
}
