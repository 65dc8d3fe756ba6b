package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/gatehouse/gatehouse/store"
)

// rsaKeyBits is the modulus size of generated RS256 keys.
const rsaKeyBits = 2048

var supportedAlgorithms = map[string]jwa.SignatureAlgorithm{
	"ES256": jwa.ES256,
	"EdDSA": jwa.EdDSA,
	"RS256": jwa.RS256,
}

// keyMaterial is the cryptographic part of a stored key, which never changes.
type keyMaterial struct {
	kid     string
	alg     jwa.SignatureAlgorithm
	private crypto.Signer
	public  jwk.Key // with kid, alg and use:"sig"; shared, never modified
}

// newSigningKey generates a key pair and its store record. The kid is the
// key's RFC 7638 thumbprint; the private key is sealed as PKCS #8 with the
// kid as additional data, so a sealed key cannot be passed off under
// another kid.
func newSigningKey(alg jwa.SignatureAlgorithm, sealer *Sealer, now time.Time) (store.SigningKey, *keyMaterial, error) {
	private, err := generatePrivateKey(alg)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	thumbprint, err := thumbprintOf(private.Public())
	if err != nil {
		return store.SigningKey{}, nil, err
	}
	kid := base64.RawURLEncoding.EncodeToString(thumbprint)
	material, err := newKeyMaterial(kid, alg, private)
	if err != nil {
		return store.SigningKey{}, nil, err
	}
	publicJSON, err := json.Marshal(material.public)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("encode public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("encode private key: %w", err)
	}
	sealed, err := sealer.Seal(der, []byte(kid))
	if err != nil {
		return store.SigningKey{}, nil, fmt.Errorf("seal private key: %w", err)
	}
	rec := store.SigningKey{
		ID:            kid,
		Algorithm:     alg.String(),
		PrivateSealed: sealed,
		PublicJWK:     publicJSON,
		CreatedAt:     now,
	}
	return rec, material, nil
}

func generatePrivateKey(alg jwa.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jwa.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA:
		_, private, err := ed25519.GenerateKey(rand.Reader)
		return private, err
	case jwa.RS256:
		return rsa.GenerateKey(rand.Reader, rsaKeyBits)
	}
	return nil, fmt.Errorf("unsupported algorithm %s", alg)
}

// openSigningKey unseals a stored key. Only what the secret authenticates is
// trusted: the public key and algorithm are derived from the sealed private
// key, and the stored public JWK must agree with it. Otherwise anyone able to
// write to the store could publish a verification key of their own.
func openSigningKey(rec store.SigningKey, sealer *Sealer) (*keyMaterial, error) {
	alg, ok := supportedAlgorithms[rec.Algorithm]
	if !ok {
		return nil, fmt.Errorf("signing key %s: unsupported algorithm %q", rec.ID, rec.Algorithm)
	}
	der, err := sealer.Open(rec.PrivateSealed, []byte(rec.ID))
	if err != nil {
		return nil, fmt.Errorf("signing key %s does not unseal: the master secret is not the one it was stored with; restore that secret, or delete the stored signing keys to start over (every issued token becomes invalid): %w", rec.ID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: decode private key: %w", rec.ID, err)
	}
	private, ok := parsed.(crypto.Signer)
	if !ok || !fitsAlgorithm(private, alg) {
		return nil, fmt.Errorf("signing key %s: a %T cannot sign %s", rec.ID, parsed, alg)
	}
	material, err := newKeyMaterial(rec.ID, alg, private)
	if err != nil {
		return nil, err
	}
	stored, err := jwk.ParseKey(rec.PublicJWK)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: decode public key: %w", rec.ID, err)
	}
	storedThumbprint, err := stored.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: public key thumbprint: %w", rec.ID, err)
	}
	derivedThumbprint, err := thumbprintOf(private.Public())
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(storedThumbprint, derivedThumbprint) {
		return nil, fmt.Errorf("signing key %s: stored public key does not match its private key", rec.ID)
	}
	return material, nil
}

func fitsAlgorithm(private crypto.Signer, alg jwa.SignatureAlgorithm) bool {
	switch k := private.(type) {
	case *ecdsa.PrivateKey:
		return alg == jwa.ES256 && k.Curve == elliptic.P256()
	case ed25519.PrivateKey:
		return alg == jwa.EdDSA
	case *rsa.PrivateKey:
		return alg == jwa.RS256 && k.N.BitLen() >= rsaKeyBits
	}
	return false
}

func newKeyMaterial(kid string, alg jwa.SignatureAlgorithm, private crypto.Signer) (*keyMaterial, error) {
	public, err := jwk.FromRaw(private.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key %s: public JWK: %w", kid, err)
	}
	for name, value := range map[string]any{
		jwk.KeyIDKey:     kid,
		jwk.AlgorithmKey: alg,
		jwk.KeyUsageKey:  jwk.ForSignature,
	} {
		if err := public.Set(name, value); err != nil {
			return nil, fmt.Errorf("signing key %s: set %s: %w", kid, name, err)
		}
	}
	return &keyMaterial{kid: kid, alg: alg, private: private, public: public}, nil
}

func thumbprintOf(public crypto.PublicKey) ([]byte, error) {
	key, err := jwk.FromRaw(public)
	if err != nil {
		return nil, fmt.Errorf("public JWK: %w", err)
	}
	thumbprint, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("public key thumbprint: %w", err)
	}
	return thumbprint, nil
}
