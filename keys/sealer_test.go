package keys_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/keys"
)

func TestSealerRoundTrip(t *testing.T) {
	sealer := mustSecret(t, testSecret).Sealer("cookies")
	for _, plaintext := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("private key "), 100)} {
		sealed, err := sealer.Seal(plaintext, []byte("kid-1"))
		if err != nil {
			t.Fatal(err)
		}
		if want := 12 + len(plaintext) + 16; len(sealed) != want {
			t.Fatalf("sealed %d bytes into %d, want nonce+ciphertext+tag = %d", len(plaintext), len(sealed), want)
		}
		got, err := sealer.Open(sealed, []byte("kid-1"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, want %q", got, plaintext)
		}
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	sealer := mustSecret(t, testSecret).Sealer("cookies")
	a, _ := sealer.Seal([]byte("same"), nil)
	b, _ := sealer.Seal([]byte("same"), nil)
	if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext share a nonce")
	}
}

func TestOpenFailsForAnythingNotSealedThatWay(t *testing.T) {
	secret := mustSecret(t, testSecret)
	sealer := secret.Sealer("signing-keys")
	sealed, err := sealer.Seal([]byte("private key"), []byte("kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 1
		return c
	}
	for _, tc := range []struct {
		name   string
		sealer *keys.Sealer
		sealed []byte
		aad    string
	}{
		{"nonce altered", sealer, flip(0), "kid-1"},
		{"ciphertext altered", sealer, flip(12), "kid-1"},
		{"tag altered", sealer, flip(len(sealed) - 1), "kid-1"},
		{"truncated", sealer, sealed[:len(sealed)-1], "kid-1"},
		{"shorter than a nonce and tag", sealer, sealed[:27], "kid-1"},
		{"empty", sealer, nil, "kid-1"},
		{"wrong aad", sealer, sealed, "kid-2"},
		{"missing aad", sealer, sealed, ""},
		{"wrong purpose", secret.Sealer("cookies"), sealed, "kid-1"},
		{"other secret", mustSecret(t, testSecret+"!").Sealer("signing-keys"), sealed, "kid-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.sealer.Open(tc.sealed, []byte(tc.aad))
			if !errors.Is(err, keys.ErrUnsealFailed) || got != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrUnsealFailed", got, err)
			}
		})
	}
}
