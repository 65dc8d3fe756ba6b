package gatehouse

import "testing"

// TestLoopbackListener: only addresses other machines cannot reach pass.
func TestLoopbackListener(t *testing.T) {
	for _, tc := range []struct {
		listen string
		local  bool
	}{
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"192.0.2.10:8080", false},
		{"127.0.0.1:8080", true},
		{"127.0.0.2:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"unix//run/gatehouse.sock", true},
		{"tcp/:443", false},
	} {
		if _, local := loopbackListener(tc.listen); local != tc.local {
			t.Errorf("loopbackListener(%q) = %v, want %v", tc.listen, local, tc.local)
		}
	}
}
