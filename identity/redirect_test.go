package identity

import "testing"

func TestSafeRedirect(t *testing.T) {
	for _, tc := range []struct {
		name, rd, want string
	}{
		{"root", "/", "/"},
		{"path with query", "/ok?x=1", "/ok?x=1"},
		{"nested path with fragment", "/gatehouse/admin#users", "/gatehouse/admin#users"},
		{"encoded space", "/a%20b", "/a%20b"},
		{"single encoded slash inside the path", "/a%2Fb", "/a%2Fb"},
		{"query holding a URL", "/ok?next=https://evil.example", "/ok?next=https://evil.example"},

		{"empty", "", "/"},
		{"relative path", "ok", "/"},
		{"protocol-relative", "//evil.example", "/"},
		{"protocol-relative with path", "//evil.example/x", "/"},
		{"backslash host", `/\evil.example`, "/"},
		{"backslash later in the path", `/ok\..\x`, "/"},
		{"absolute https", "https://evil.example", "/"},
		{"absolute with local path", "https://evil.example/ok", "/"},
		{"javascript", "javascript:alert(1)", "/"},
		{"data", "data:text/html,hi", "/"},
		// Browsers strip tabs and newlines, which would leave "//evil.example".
		{"tab between slashes", "/\t/evil.example", "/"},
		{"newline between slashes", "/\n/evil.example", "/"},
		{"carriage return", "/\r/evil.example", "/"},
		{"NUL", "/ok\x00", "/"},
		{"DEL", "/ok\x7f", "/"},
		{"leading space", " //evil.example", "/"},
		{"unicode line separator", "/ok\u2028", "/"},
		// Decoded forms are checked too (see SafeRedirect's doc comment).
		{"encoded double slash", "/%2F%2Fevil.example", "/"},
		{"encoded second slash", "/%2Fevil.example", "/"},
		{"encoded backslash", "/%5Cevil.example", "/"},
		{"encoded tab", "/%09/evil.example", "/"},
		{"encoded newline", "/ok%0a", "/"},
		{"double-encoded slash", "/%252Fevil.example", "/"},
		{"invalid escape", "/ok%zz", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SafeRedirect(tc.rd); got != tc.want {
				t.Errorf("SafeRedirect(%q) = %q, want %q", tc.rd, got, tc.want)
			}
		})
	}
}
