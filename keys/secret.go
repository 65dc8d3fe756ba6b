// Package keys holds Gatehouse's cryptographic material: the master secret and
// the purpose-bound sealers derived from it, the ring of signing keys kept
// (sealed) in the store and published as a JWKS, and the short-lived
// assertions Gatehouse hands to the protected upstream. core (and tokens,
// through an interface) use it; it imports only store.
package keys

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MinSecretLength is the shortest configured secret accepted, in bytes: the
// secret is the only thing between a copy of the store and its private keys.
const MinSecretLength = 32

// hkdfSalt separates Gatehouse's derivations from any other use of the same
// secret string.
var hkdfSalt = []byte("gatehouse master secret v1")

// Secret is the master secret. Every other secret (sealing keys, cookie keys)
// is derived from it with HKDF-SHA256 and a purpose label, so one value
// configured or kept in one file is enough, and no two purposes share a key.
type Secret struct {
	prk []byte // HKDF-Extract output; the raw input is not kept
}

// SecretFromString accepts a configured secret (e.g. {env.GATEHOUSE_SECRET}).
// Surrounding whitespace is ignored so that a value copied from the secret
// file, trailing newline included, yields the same keys as the file itself.
func SecretFromString(s string) (*Secret, error) {
	s = strings.TrimSpace(s)
	if len(s) < MinSecretLength {
		return nil, fmt.Errorf("master secret is %d bytes long, at least %d are required (e.g. `openssl rand -base64 32`)", len(s), MinSecretLength)
	}
	prk, err := hkdf.Extract(sha256.New, []byte(s), hkdfSalt)
	if err != nil {
		return nil, fmt.Errorf("derive master key: %w", err)
	}
	return &Secret{prk: prk}, nil
}

// LoadOrCreateSecretFile reads the secret kept at path, or, when there is no
// file yet, writes 32 random bytes there (base64, mode 0600, missing parent
// directories 0700). created reports the latter. An existing file that group
// or others may read is refused rather than trusted: its secret may already
// have leaked.
func LoadOrCreateSecretFile(path string) (s *Secret, created bool, err error) {
	s, err = loadSecretFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return s, false, err
	}
	created, err = createSecretFile(path)
	if err != nil {
		return nil, false, err
	}
	// Read back what is on disk: another process may have won the race to create it.
	s, err = loadSecretFile(path)
	return s, created, err
}

func loadSecretFile(path string) (*Secret, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s has mode %04o and is readable or writable by group or others; run `chmod 600 %s` (and consider the secret leaked if others could read it)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	s, err := SecretFromString(string(data))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	return s, nil
}

// createSecretFile writes a fresh secret to a temporary file and links it into
// place, so that a concurrent reader never sees a partly written secret and a
// concurrent creator never overwrites one already in use.
func createSecretFile(path string) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create secret file directory: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	content := base64.StdEncoding.EncodeToString(raw) + "\n"

	tmp, err := os.CreateTemp(dir, ".gatehouse-secret-*")
	if err != nil {
		return false, fmt.Errorf("create secret file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already uses 0600; Chmod makes it independent of that detail.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("create secret file: %w", err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write secret file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write secret file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write secret file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("create secret file: %w", err)
	}
	return true, nil
}

// Sealer returns the AES-256-GCM sealer whose key is derived for purpose.
// Data sealed for one purpose does not open under another.
func (s *Secret) Sealer(purpose string) *Sealer {
	key, err := hkdf.Expand(sha256.New, s.prk, "gatehouse/"+purpose, 32)
	if err != nil {
		// Expand fails only for lengths beyond 255 hash blocks.
		panic(fmt.Sprintf("keys: derive sealing key: %v", err))
	}
	return newSealer(key)
}

// String keeps the secret out of logs and error messages.
func (s *Secret) String() string { return "keys.Secret(redacted)" }

// GoString keeps the secret out of %#v.
func (s *Secret) GoString() string { return s.String() }
