package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
)

// ErrUnsealFailed means sealed data did not open: it was altered, sealed under
// another secret or purpose, or bound to other additional data. The cases are
// deliberately indistinguishable.
var ErrUnsealFailed = errors.New("unseal failed")

// Sealer encrypts and authenticates small values (private keys, state
// cookies) with AES-256-GCM. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) *Sealer {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("keys: sealing key: %v", err)) // only for a key that is not 32 bytes
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(fmt.Sprintf("keys: sealing key: %v", err))
	}
	return &Sealer{aead: aead}
}

// Seal encrypts plaintext and binds it to aad, which must be presented again
// to Open. The output is a random 96-bit nonce followed by the ciphertext and
// tag; random nonces keep a key safe for about 2^32 seals.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	return s.aead.Seal(nil, nil, plaintext, aad), nil
}

// Open reverses Seal. It returns ErrUnsealFailed for anything that does not
// authenticate.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	plaintext, err := s.aead.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, ErrUnsealFailed
	}
	return plaintext, nil
}
