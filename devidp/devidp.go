// Package devidp is Gatehouse's built-in development OpenID provider: a
// zitadel/oidc op.Provider with an in-memory storage and a page that lets
// anyone pick one of the configured users. It exists so Gatehouse can be tried
// without an identity provider of one's own, and must never guard real data.
// core imports it, and the Caddy module for its configuration type.
package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/op"
	"go.uber.org/zap"
)

// User is a person the sign-in page offers.
type User struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Client is a relying party allowed to use the provider. A client without a
// Secret is public and must use PKCE (S256).
type Client struct {
	ID, Secret                           string
	RedirectURIs, PostLogoutRedirectURIs []string
}

// Config describes one provider. Its JSON is what Gatehouse's dev_idp block
// configures, the users; Gatehouse derives the rest.
type Config struct {
	Users []User `json:"users,omitempty"`
	// AllowRemote lets it start while Gatehouse listens beyond loopback:
	// anyone who reaches the site can then sign in as any user.
	AllowRemote bool        `json:"allow_remote,omitempty"`
	Issuer      string      `json:"-"` // absolute URL including the mount path, e.g. "http://127.0.0.1:8080/dev-idp"
	Clients     []Client    `json:"-"`
	Logger      *zap.Logger `json:"-"` // may be nil
}

// Validate reports a configuration that offers nobody to sign in as. New
// checks the users in full, and the issuer and clients Gatehouse derives.
func (c *Config) Validate() error {
	if len(c.Users) == 0 {
		return errors.New("at least one user is required")
	}
	return nil
}

// ExpandPlaceholders passes each configured string through expand.
func (c *Config) ExpandPlaceholders(expand func(string) string) {
	for i := range c.Users {
		c.Users[i].Email = expand(c.Users[i].Email)
		c.Users[i].Name = expand(c.Users[i].Name)
	}
}

// Provider serves the OpenID provider endpoints and its sign-in page under
// the issuer's path.
type Provider struct {
	mountPath string
	handler   http.Handler
}

const (
	loginPath     = "/login"
	loggedOutPath = "/logged-out"
)

// New validates cfg and builds a provider with a fresh signing key and token
// encryption key; tokens issued before a restart are therefore invalid after
// it, while subjects stay the same (see SubjectFor).
func New(cfg Config) (*Provider, error) {
	issuer, err := parseIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if err := validateUsers(cfg.Users); err != nil {
		return nil, err
	}
	if err := validateClients(cfg.Clients); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}

	store, err := newStorage(issuer.String()+loginPath, cfg.Users, cfg.Clients)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: generate token encryption key: %w", err)
	}
	opConfig := &op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              rand.Text(),
		DefaultLogoutRedirectURI: issuer.String() + loggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
	}
	provider, err := op.NewProvider(opConfig, store, op.StaticIssuer(issuer.String()), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devidp: create OpenID provider: %w", err)
	}

	login := &loginPage{
		storage:  store,
		users:    slices.Clone(cfg.Users),
		callback: op.AuthCallbackURL(provider),
		logger:   logger,
	}
	mux := http.NewServeMux()
	// The issuer interceptor puts the issuer into the request context, which
	// op.AuthCallbackURL reads to build the absolute callback URL.
	withIssuer := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux.HandleFunc("GET "+loginPath, login.show)
	mux.HandleFunc("POST "+loginPath, withIssuer.HandlerFunc(login.submit))
	mux.HandleFunc("GET "+loggedOutPath, showLoggedOut)
	mux.Handle("/", provider)

	logger.Warn("development identity provider enabled: anyone who can reach it can sign in as any listed user; never use it in production",
		zap.String("issuer", issuer.String()),
		zap.Int("users", len(cfg.Users)),
		zap.Int("clients", len(cfg.Clients)))
	return &Provider{mountPath: issuer.Path, handler: mux}, nil
}

// MountPath is the issuer's path, under which ServeHTTP answers ("/dev-idp").
func (p *Provider) MountPath() string { return p.mountPath }

// ServeHTTP serves requests whose URL path starts with the issuer's path and
// answers 404 to any other.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, p.mountPath)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		http.NotFound(w, r)
		return
	}
	if rest == "" {
		rest = "/"
	}
	// ServeMux would answer an unclean path with a redirect that drops the
	// mount path, sending the browser outside the provider.
	if path.Clean(rest) != rest {
		http.NotFound(w, r)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = rest
	// RawPath no longer matches the stripped Path; dropping it makes the
	// routers fall back to Path, as http.StripPrefix does when it cannot trim.
	r2.URL.RawPath = ""
	p.handler.ServeHTTP(w, r2)
}

// SubjectFor derives the stable `sub` for an email: a hash of the lower-cased
// address, so restarts and reordering the user list keep every subject.
func SubjectFor(email string) string {
	sum := sha256.Sum256([]byte("gatehouse-dev-idp:" + strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:16])
}

func parseIssuer(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("devidp: issuer is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("devidp: issuer %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("devidp: issuer %q is not an absolute http or https URL", raw)
	case u.User != nil, u.RawQuery != "", u.Fragment != "", u.ForceQuery:
		return nil, fmt.Errorf("devidp: issuer %q must not carry credentials, a query or a fragment", raw)
	case u.Path == "" || u.Path == "/":
		return nil, fmt.Errorf("devidp: issuer %q has no mount path (for example %s/dev-idp)", raw, strings.TrimSuffix(raw, "/"))
	case strings.HasSuffix(u.Path, "/"):
		// Relying parties compare the issuer string exactly, so a trailing
		// slash would silently make it differ from the one Gatehouse expects.
		return nil, fmt.Errorf("devidp: issuer %q must not end with a slash", raw)
	case u.RawPath != "":
		return nil, fmt.Errorf("devidp: issuer %q must not contain escaped characters in its path", raw)
	}
	return u, nil
}

func validateUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("devidp: no users configured")
	}
	seen := make(map[string]bool, len(users))
	for i, u := range users {
		if u.Email == "" {
			return fmt.Errorf("devidp: user %d (%q) has no email", i+1, u.Name)
		}
		if addr, err := mail.ParseAddress(u.Email); err != nil || addr.Address != u.Email {
			return fmt.Errorf("devidp: user %d has an invalid email %q", i+1, u.Email)
		}
		subject := SubjectFor(u.Email)
		if seen[subject] {
			return fmt.Errorf("devidp: user email %q is listed twice", u.Email)
		}
		seen[subject] = true
	}
	return nil
}

func validateClients(clients []Client) error {
	if len(clients) == 0 {
		return errors.New("devidp: no clients configured")
	}
	seen := make(map[string]bool, len(clients))
	for i, c := range clients {
		if c.ID == "" {
			return fmt.Errorf("devidp: client %d has no ID", i+1)
		}
		if seen[c.ID] {
			return fmt.Errorf("devidp: client %q is listed twice", c.ID)
		}
		seen[c.ID] = true
		if len(c.RedirectURIs) == 0 {
			return fmt.Errorf("devidp: client %q has no redirect URI", c.ID)
		}
		for _, uri := range append(append([]string(nil), c.RedirectURIs...), c.PostLogoutRedirectURIs...) {
			if u, err := url.Parse(uri); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("devidp: client %q: redirect URI %q is not an absolute http or https URL", c.ID, uri)
			}
		}
	}
	return nil
}
