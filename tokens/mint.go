// Package tokens mints and verifies Gatehouse API tokens (spec §5): JWTs of
// type at+jwt signed by the key ring, which programs present as
// `Authorization: Bearer <token>`. Verification is the guard's hot path, so a
// Verifier remembers the tokens it has verified until they expire. Only core
// imports it.
package tokens

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse/gatehouse/quota"
)

// TokenType is the typ header of an API token (RFC 9068). It keeps other JWTs
// signed by the same ring, such as upstream assertions (typ "JWT"), from
// passing as API tokens.
const TokenType = "at+jwt"

// DefaultAudience is the audience every API token names.
const DefaultAudience = "gatehouse"

// Token kinds (spec §5).
const (
	KindPersonal = "personal"
	KindUser     = "user"
	KindSystem   = "system"
)

func validKind(kind string) bool {
	return kind == KindPersonal || kind == KindUser || kind == KindSystem
}

// Claims are the validated claims of a Gatehouse API token.
type Claims struct {
	ID, Subject, Kind, Role, Email, Name, ClientID string
	Scope                                          []string // from the space-separated "scope" claim
	Models                                         []string // nil when the claim is absent (= every model the role may use)
	// Limits are the token's own quotas (the "limits" claim), nil when it
	// has none; the role's apply as well.
	Limits                         *quota.Limits
	IssuedAt, NotBefore, ExpiresAt time.Time
}

// Signer signs a claims set as a compact JWS whose protected header holds
// typ and the signer's own alg and kid; *keys.Ring is one.
type Signer interface {
	Sign(claims map[string]any, typ string) (string, error)
}

// Mint builds and signs an API token: header {"alg","typ":"at+jwt","kid"},
// claims iss, sub, aud (DefaultAudience then audiences), iat, nbf (= iat),
// exp, jti and client_id (both c.ID), token_kind, role, scope (space-separated,
// RFC 9068), models (omitted when nil), limits (omitted when none), email and
// name (omitted when empty).
// c.NotBefore and c.ClientID are ignored; times are truncated to seconds.
// Mint refuses claims that Verify would refuse, so that a minted token works.
func Mint(s Signer, issuer string, audiences []string, c Claims) (string, error) {
	if err := checkMintable(issuer, audiences, c); err != nil {
		return "", fmt.Errorf("mint token %s: %w", c.ID, err)
	}
	aud := make([]string, 0, 1+len(audiences))
	aud = append(aud, DefaultAudience)
	for _, a := range audiences {
		if a != DefaultAudience {
			aud = append(aud, a)
		}
	}
	issuedAt := c.IssuedAt.Unix()
	claims := map[string]any{
		"iss":        issuer,
		"sub":        c.Subject,
		"aud":        aud,
		"iat":        issuedAt,
		"nbf":        issuedAt,
		"exp":        c.ExpiresAt.Unix(),
		"jti":        c.ID,
		"client_id":  c.ID,
		"token_kind": c.Kind,
		"role":       c.Role,
		"scope":      strings.Join(c.Scope, " "),
	}
	if c.Models != nil {
		claims["models"] = c.Models
	}
	if c.Limits != nil && !c.Limits.IsZero() {
		claims["limits"] = c.Limits
	}
	if c.Email != "" {
		claims["email"] = c.Email
	}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	token, err := s.Sign(claims, TokenType)
	if err != nil {
		return "", fmt.Errorf("mint token %s: %w", c.ID, err)
	}
	return token, nil
}

func checkMintable(issuer string, audiences []string, c Claims) error {
	switch {
	case issuer == "":
		return errors.New("issuer is required")
	case c.ID == "":
		return errors.New("token ID is required")
	case c.Subject == "":
		return errors.New("subject is required")
	case !validKind(c.Kind):
		return fmt.Errorf("token kind %q is not personal, user or system", c.Kind)
	case c.IssuedAt.IsZero():
		return errors.New("issue time is required")
	case c.ExpiresAt.Unix() <= c.IssuedAt.Unix():
		return errors.New("expiry must be at least a second after the issue time")
	}
	for _, a := range audiences {
		if a == "" {
			return errors.New("empty audience")
		}
	}
	// A scope entry holding a space would come back as two permissions.
	for _, p := range c.Scope {
		if p == "" || strings.ContainsFunc(p, unicode.IsSpace) {
			return fmt.Errorf("permission %q is empty or contains white space", p)
		}
	}
	for _, m := range c.Models {
		if m == "" {
			return errors.New("empty model pattern")
		}
	}
	return nil
}
