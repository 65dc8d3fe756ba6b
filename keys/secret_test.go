package keys_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/keys"
)

const testSecret = "0123456789abcdef0123456789abcdef" // exactly MinSecretLength bytes

func mustSecret(t testing.TB, s string) *keys.Secret {
	t.Helper()
	secret, err := keys.SecretFromString(s)
	if err != nil {
		t.Fatalf("SecretFromString: %v", err)
	}
	return secret
}

// sameKeys reports whether two secrets derive the same sealing keys.
func sameKeys(t *testing.T, a, b *keys.Secret) bool {
	t.Helper()
	sealed, err := a.Sealer("probe").Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Sealer("probe").Open(sealed, nil)
	return err == nil
}

func TestSecretFromStringRefusesShortInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"empty", ""},
		{"31 bytes", testSecret[:31]},
		{"31 bytes padded with whitespace", "   " + testSecret[:31] + "\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keys.SecretFromString(tc.input)
			if err == nil || !strings.Contains(err.Error(), "at least 32 are required") {
				t.Fatalf("SecretFromString(%q) error = %v, want one saying at least 32 bytes are required", tc.input, err)
			}
		})
	}
}

func TestSecretFromStringIgnoresSurroundingWhitespace(t *testing.T) {
	if !sameKeys(t, mustSecret(t, testSecret), mustSecret(t, " \t"+testSecret+"\n")) {
		t.Fatal("a secret with surrounding whitespace derives other keys than the bare secret")
	}
	if sameKeys(t, mustSecret(t, testSecret), mustSecret(t, testSecret+"x")) {
		t.Fatal("different secrets derive the same keys")
	}
}

func TestSecretDoesNotPrint(t *testing.T) {
	s := mustSecret(t, testSecret)
	got := fmt.Sprintf("%v %s %+v %#v", s, s, s, s)
	want := "keys.Secret(redacted) keys.Secret(redacted) keys.Secret(redacted) keys.Secret(redacted)"
	if got != want {
		t.Fatalf("formatted secret = %q, want %q", got, want)
	}
}

func TestLoadOrCreateSecretFileCreatesPrivateFileThenReusesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	path := filepath.Join(dir, "secret")

	first, created, err := keys.LoadOrCreateSecretFile(path)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v, want created", created, err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	assertMode(t, filepath.Dir(dir), 0o700)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(content)))
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret file holds %q: want base64 of 32 bytes (decode error %v)", content, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the secret file", len(entries))
	}

	second, created, err := keys.LoadOrCreateSecretFile(path)
	if err != nil || created {
		t.Fatalf("second load: created=%v err=%v, want the existing file reused", created, err)
	}
	if !sameKeys(t, first, second) {
		t.Fatal("the reloaded secret derives other keys")
	}
	again, err := os.ReadFile(path)
	if err != nil || string(again) != string(content) {
		t.Fatalf("secret file changed on second load")
	}
	// The file's content, given as a configured value, is the same secret.
	if !sameKeys(t, first, mustSecret(t, string(content))) {
		t.Fatal("the secret file's content used as a configured secret derives other keys")
	}
}

func TestLoadOrCreateSecretFileRefusesFileOthersCanRead(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(testSecret), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			s, created, err := keys.LoadOrCreateSecretFile(path)
			if err == nil || s != nil || created {
				t.Fatalf("got secret=%v created=%v err=%v, want refusal", s, created, err)
			}
			want := fmt.Sprintf("secret file %s has mode %04o and is readable or writable by group or others; run `chmod 600 %s`", path, mode, path)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error = %q, want it to contain %q", err, want)
			}
			assertMode(t, path, mode)
		})
	}
}

func TestLoadOrCreateSecretFileRefusesShortSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := keys.LoadOrCreateSecretFile(path)
	if err == nil || !strings.Contains(err.Error(), "secret file "+path+": master secret is 9 bytes long") {
		t.Fatalf("error = %v, want one naming the file and the short secret", err)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %04o, want %04o", path, got, want)
	}
}
