package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/gatehouse/gatehouse/quota"
)

// ErrInvalidToken is wrapped by every refusal of Verify. The wrapping error
// names the reason, for logs; it never quotes the token.
var ErrInvalidToken = errors.New("invalid token")

// refusal is a reason for refusing a token. Reasons are constants, so
// refusing costs no allocation: a flood of garbage tokens stays cheap.
type refusal string

func (r refusal) Error() string { return ErrInvalidToken.Error() + ": " + string(r) }
func (r refusal) Unwrap() error { return ErrInvalidToken }

// KeySource looks up a verification key by kid with the algorithm it signs
// with; *keys.Ring is one.
type KeySource interface {
	PublicKey(kid string) (jwk.Key, string, bool)
}

// Defaults of VerifierConfig.
const (
	DefaultSkew          = 30 * time.Second
	DefaultMaxTokenBytes = 8192
	DefaultCacheSize     = 100_000
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the expected iss (= public_url). When empty every token is
	// refused: a token must name its issuer.
	Issuer string
	// Audience must be a member of aud; DefaultAudience when empty.
	Audience string
	// Skew is the clock skew allowed for exp, nbf and iat: DefaultSkew when
	// zero, none when negative.
	Skew time.Duration
	// MaxTokenBytes is the longest token considered; longer strings are
	// refused before any parsing. DefaultMaxTokenBytes when zero or less.
	MaxTokenBytes int
	// CacheSize bounds the verified-token cache: DefaultCacheSize when zero,
	// no cache when negative.
	CacheSize int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Verifier checks API tokens against the keys of a KeySource and caches
// those that pass. It is safe for concurrent use.
//
// Revocation is the caller's job: it must look the returned ID up in its
// revocation list on every request, cache hits included, and call Forget when
// it revokes a token so that the cache drops it too.
type Verifier struct {
	keys          KeySource
	issuer        string
	audience      string
	skew          time.Duration
	maxTokenBytes int
	now           func() time.Time
	cache         *cache // nil: no cache
}

// NewVerifier returns a Verifier of tokens signed by keys.
func NewVerifier(keys KeySource, cfg VerifierConfig) *Verifier {
	v := &Verifier{
		keys:          keys,
		issuer:        cfg.Issuer,
		audience:      cfg.Audience,
		skew:          cfg.Skew,
		maxTokenBytes: cfg.MaxTokenBytes,
		now:           cfg.Now,
	}
	if v.audience == "" {
		v.audience = DefaultAudience
	}
	switch {
	case v.skew == 0:
		v.skew = DefaultSkew
	case v.skew < 0:
		v.skew = 0
	}
	if v.maxTokenBytes <= 0 {
		v.maxTokenBytes = DefaultMaxTokenBytes
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case cfg.CacheSize == 0:
		v.cache = newCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		v.cache = newCache(cfg.CacheSize)
	}
	return v
}

// Verify returns the claims of a valid token, or an error wrapping
// ErrInvalidToken. The returned slices belong to the caller.
//
// A token is valid when it is a compact JWS (three canonical base64url parts)
// whose protected header has exactly alg, kid and typ, typ is at+jwt, kid
// names a key of the KeySource and alg is that key's own algorithm (the
// header never chooses it); whose signature verifies with that key; and whose
// claims have iss = Issuer, Audience in aud, exp > now-skew, nbf and iat ≤
// now+skew, a jti equal to client_id, a sub, a token_kind of personal, user or
// system and a string scope.
func (v *Verifier) Verify(token string) (Claims, error) {
	if len(token) > v.maxTokenBytes {
		return Claims{}, refusal("too long")
	}
	now := v.now()
	if v.cache != nil {
		if e := v.cache.get(token); e != nil {
			if !e.validAt(now) {
				return Claims{}, refusal("expired or not yet valid")
			}
			return e.claims.clone(), nil
		}
	}
	c, err := v.verify(token, now)
	if err != nil {
		return Claims{}, err
	}
	if v.cache != nil {
		v.cache.put(token, newCacheEntry(token, c, v.skew), now)
	}
	return c.clone(), nil
}

// Forget drops the cached verification of every token with this jti, so that
// a revoked token is verified afresh (and refused by the caller's revocation
// check) rather than served from the cache.
func (v *Verifier) Forget(jti string) {
	if v.cache != nil {
		v.cache.forget(jti)
	}
}

// Purge empties the cache, e.g. after a signing key was withdrawn.
func (v *Verifier) Purge() {
	if v.cache != nil {
		v.cache.purge()
	}
}

// strictBase64 refuses what the lenient decoders of JOSE libraries accept:
// padding, and non-zero trailing bits, which would let one signature be
// spelled several ways, so that a modified token string still verifies.
var strictBase64 = base64.RawURLEncoding.Strict()

// supportedAlgorithms are the asymmetric algorithms a key may sign with. A
// KeySource naming anything else ("none", HMAC, whose key would be public) is
// not trusted.
var supportedAlgorithms = map[string]jwa.SignatureAlgorithm{
	"ES256": jwa.ES256, "ES384": jwa.ES384, "ES512": jwa.ES512,
	"EdDSA": jwa.EdDSA,
	"RS256": jwa.RS256, "RS384": jwa.RS384, "RS512": jwa.RS512,
	"PS256": jwa.PS256, "PS384": jwa.PS384, "PS512": jwa.PS512,
}

func (v *Verifier) verify(token string, now time.Time) (Claims, error) {
	encHeader, encPayload, encSignature, ok := splitCompact(token)
	if !ok {
		return Claims{}, refusal("not a compact JWS")
	}
	header, err := strictBase64.DecodeString(encHeader)
	if err != nil {
		return Claims{}, refusal("header is not canonical base64url")
	}
	headerAlg, kid, err := checkHeader(header)
	if err != nil {
		return Claims{}, err
	}
	key, keyAlg, ok := v.keys.PublicKey(kid)
	if !ok {
		return Claims{}, refusal("unknown kid")
	}
	alg, ok := supportedAlgorithms[keyAlg]
	if !ok {
		return Claims{}, refusal("key has no supported asymmetric algorithm")
	}
	if headerAlg != keyAlg {
		return Claims{}, refusal("alg is not the key's algorithm")
	}
	payload, err := strictBase64.DecodeString(encPayload)
	if err != nil {
		return Claims{}, refusal("payload is not canonical base64url")
	}
	if _, err := strictBase64.DecodeString(encSignature); err != nil {
		return Claims{}, refusal("signature is not canonical base64url")
	}
	if _, err := jws.Verify([]byte(token), jws.WithKey(alg, key)); err != nil {
		return Claims{}, refusal("bad signature")
	}
	return v.checkClaims(payload, now)
}

// splitCompact splits a compact JWS into its three non-empty parts, refusing
// any character outside the base64url alphabet: base64 decoders skip line
// breaks, which would let a modified string pass.
func splitCompact(token string) (header, payload, signature string, ok bool) {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case !base64URLChars[c]:
			return "", "", "", false
		}
	}
	if dots != 2 {
		return "", "", "", false
	}
	header, rest, _ := strings.Cut(token, ".")
	payload, signature, _ = strings.Cut(rest, ".")
	if header == "" || payload == "" || signature == "" {
		return "", "", "", false
	}
	return header, payload, signature, true
}

var base64URLChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// checkHeader checks the protected header before any cryptography and
// returns its alg and kid. Only the parameters Gatehouse writes are allowed; this
// refuses crit, b64 (which would change what is signed) and the key-carrying
// jku, jwk, x5u and x5c, whose keys an attacker would choose.
func checkHeader(header []byte) (alg, kid string, err error) {
	var params map[string]json.RawMessage
	if err := json.Unmarshal(header, &params); err != nil || params == nil {
		return "", "", refusal("header is not a JSON object")
	}
	for name := range params {
		if name != "alg" && name != "kid" && name != "typ" {
			return "", "", refusal("header has a parameter other than alg, kid and typ")
		}
	}
	alg, ok := jsonString(params["alg"])
	if !ok {
		return "", "", refusal("header has no alg")
	}
	typ, ok := jsonString(params["typ"])
	if !ok || !isTokenType(typ) {
		return "", "", refusal("typ is not at+jwt")
	}
	kid, ok = jsonString(params["kid"])
	if !ok || kid == "" {
		return "", "", refusal("header has no kid")
	}
	return alg, kid, nil
}

// isTokenType accepts typ at+jwt in either form RFC 9068 allows.
func isTokenType(typ string) bool {
	typ, _ = strings.CutPrefix(strings.ToLower(typ), "application/")
	return typ == TokenType
}

// jsonString decodes a JSON string value; null, numbers and the rest are not
// strings (json.Unmarshal would turn null into "" without complaint).
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

type tokenPayload struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt json.RawMessage `json:"exp"`
	NotBefore json.RawMessage `json:"nbf"`
	IssuedAt  json.RawMessage `json:"iat"`
	ID        string          `json:"jti"`
	ClientID  string          `json:"client_id"`
	Kind      string          `json:"token_kind"`
	Role      string          `json:"role"`
	Scope     json.RawMessage `json:"scope"`
	Models    json.RawMessage `json:"models"`
	Limits    *quota.Limits   `json:"limits"`
	Email     string          `json:"email"`
	Name      string          `json:"name"`
}

func (v *Verifier) checkClaims(payload []byte, now time.Time) (Claims, error) {
	var p tokenPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return Claims{}, refusal("claims are not a JSON object of the expected types")
	}
	if p.Issuer == "" || p.Issuer != v.issuer {
		return Claims{}, refusal("wrong issuer")
	}
	if !hasAudience(p.Audience, v.audience) {
		return Claims{}, refusal("wrong audience")
	}
	expiresAt, ok1 := numericDate(p.ExpiresAt)
	notBefore, ok2 := numericDate(p.NotBefore)
	issuedAt, ok3 := numericDate(p.IssuedAt)
	if !ok1 || !ok2 || !ok3 {
		return Claims{}, refusal("exp, nbf or iat missing or not a NumericDate")
	}
	if !now.Add(-v.skew).Before(expiresAt) {
		return Claims{}, refusal("expired")
	}
	if latest := now.Add(v.skew); notBefore.After(latest) || issuedAt.After(latest) {
		return Claims{}, refusal("not yet valid")
	}
	if p.ID == "" || p.ClientID != p.ID {
		return Claims{}, refusal("jti missing or not equal to client_id")
	}
	if p.Subject == "" {
		return Claims{}, refusal("sub missing")
	}
	if !validKind(p.Kind) {
		return Claims{}, refusal("token_kind is not personal, user or system")
	}
	scope, ok := jsonString(p.Scope)
	if !ok {
		return Claims{}, refusal("scope missing or not a string")
	}
	c := Claims{
		ID:        p.ID,
		Subject:   p.Subject,
		Kind:      p.Kind,
		Role:      p.Role,
		Email:     p.Email,
		Name:      p.Name,
		ClientID:  p.ClientID,
		Scope:     strings.Fields(scope),
		IssuedAt:  issuedAt,
		NotBefore: notBefore,
		ExpiresAt: expiresAt,
	}
	if len(p.Models) > 0 {
		// null is refused rather than read as "absent": absent grants every model.
		if p.Models[0] != '[' || json.Unmarshal(p.Models, &c.Models) != nil {
			return Claims{}, refusal("models is not an array of strings")
		}
		c.Models = slices.Clip(c.Models)
	}
	if p.Limits != nil {
		if err := p.Limits.Validate(); err != nil {
			return Claims{}, refusal("limits: " + err.Error())
		}
		if !p.Limits.IsZero() {
			c.Limits = p.Limits
		}
	}
	return c, nil
}

// hasAudience reports whether aud, a string or an array of strings, names want.
func hasAudience(aud json.RawMessage, want string) bool {
	if s, ok := jsonString(aud); ok {
		return s == want
	}
	var list []string
	if len(aud) == 0 || aud[0] != '[' || json.Unmarshal(aud, &list) != nil {
		return false
	}
	return slices.Contains(list, want)
}

// maxNumericDate keeps times within what time.Time and float64 hold exactly.
const maxNumericDate = 1 << 40

// numericDate decodes an RFC 7519 NumericDate: a JSON number of seconds
// since the epoch, possibly fractional. Strings are refused.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if n < 0 || n > maxNumericDate {
			return time.Time{}, false
		}
		return time.Unix(n, 0).UTC(), true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
