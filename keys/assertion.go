package keys

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// MaxAssertionLifetime caps the life of an upstream assertion (spec §6): it
// travels with one proxied request and must be useless soon after.
const MaxAssertionLifetime = 60 * time.Second

// AssertionType is the typ header of an upstream assertion. It differs from
// an API token's "at+jwt", so a verifier of API tokens that checks typ never
// accepts an assertion captured upstream.
const AssertionType = "JWT"

// Assertion signs the X-Gatehouse-Assertion JWT that tells the upstream who
// the caller is: claims iss, aud, sub, email and role (each omitted when
// empty, except iss, aud and sub, which are required), iat, exp and a
// random 96-bit jti. No nbf: it would equal iat, and every byte rides in
// each proxied request. ttl is capped at MaxAssertionLifetime, which is also the
// lifetime when ttl is not positive.
func (r *Ring) Assertion(issuer, audience, subject, email, role string, ttl time.Duration) (string, error) {
	if issuer == "" || audience == "" || subject == "" {
		return "", errors.New("assertion: issuer, audience and subject are required")
	}
	if ttl <= 0 || ttl > MaxAssertionLifetime {
		ttl = MaxAssertionLifetime
	}
	// NumericDate has whole seconds; round the lifetime up so that a
	// sub-second ttl does not yield a token that is expired when issued.
	lifetime := int64((ttl + time.Second - 1) / time.Second)
	issuedAt := r.now().Unix()

	jti := make([]byte, 12)
	rand.Read(jti)
	claims := map[string]any{
		"iss": issuer,
		"aud": audience,
		"sub": subject,
		"iat": issuedAt,
		"exp": issuedAt + lifetime,
		"jti": base64.RawURLEncoding.EncodeToString(jti),
	}
	if email != "" {
		claims["email"] = email
	}
	if role != "" {
		claims["role"] = role
	}
	token, err := r.Sign(claims, AssertionType)
	if err != nil {
		return "", fmt.Errorf("assertion: %w", err)
	}
	return token, nil
}
