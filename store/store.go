// Package store keeps Gatehouse's durable state — users, sessions, access
// requests, audit events, the notification outbox, signing keys, runtime
// settings, API tokens and usage per minute — behind one interface with
// several backends (SQLite embedded, PostgreSQL shared). Every backend runs
// the conformance suite in storetest.
// Everything below the handlers imports it; of Gatehouse it imports only
// quota, for the type of a user's own limits.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/quota"
)

// Sentinel errors every backend returns so callers can map them to HTTP
// statuses with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write lost against the current state: a request
	// that is no longer pending, a second pending request, a duplicate key.
	ErrConflict = errors.New("conflict")
)

// User statuses.
const (
	StatusPending   = "pending"
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusDenied    = "denied"
)

// Access request statuses.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	// RequestExpired is a request nobody decided within request_ttl.
	RequestExpired = "expired"
)

// Elevation statuses (spec §10, temporary elevation).
const (
	ElevationPending  = "pending"
	ElevationApproved = "approved" // held until ExpiresAt
	ElevationDenied   = "denied"
	// ElevationExpired: at ExpiresAt the user's role went back to FromRole.
	ElevationExpired = "expired"
	// ElevationEnded: someone set the user's role while it was held, and
	// that role stays.
	ElevationEnded = "ended"
)

// User is a person known to Gatehouse, keyed by (Issuer, Subject).
type User struct {
	ID      string `json:"id"`
	Issuer  string `json:"-"`
	Subject string `json:"-"`
	// Provider is the name of the OpenID provider the user signs in
	// through ("" for a user of before several providers).
	Provider    string     `json:"provider"`
	Email       string     `json:"email"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	LastLoginAt *time.Time `json:"last_login_at"`
	// AccessExpiresAt ends a temporary grant: past it the user is treated as pending.
	AccessExpiresAt *time.Time `json:"access_expires_at,omitempty"`
	// Limits are the user's own quotas, narrowing their role's (spec §8); nil: none.
	Limits *quota.Limits `json:"limits,omitempty"`
}

// LoginInfo is what a successful OIDC sign-in tells the store about a person.
type LoginInfo struct {
	Issuer   string
	Subject  string
	Provider string // the configured name of the provider
	Email    string
	Name     string
	// BootstrapAdmin makes a user that is new, or still pending, an active
	// admin, once per email: never again for that email (another subject, the
	// same one after deletion or demotion).
	BootstrapAdmin bool
	Now            time.Time
}

// Session is a server-side browser session. ID is the SHA-256 of the cookie
// value (hex), so a copy of the store does not hold usable cookies.
type Session struct {
	ID          string
	UserID      string
	CreatedAt   time.Time
	LastSeenAt  time.Time
	ExpiresAt   time.Time // absolute lifetime
	IDTokenHint string    // for RP-initiated logout at the IdP
	Auth        AuthContext
}

// AuthContext is how the sign-in behind a session was authenticated, as
// the ID token says (spec §10, step-up MFA).
type AuthContext struct {
	ACR string   `json:"acr"`
	AMR []string `json:"amr"`
	// AuthTime is when the person authenticated at the provider (its
	// auth_time, else the token's iat); zero when unknown.
	AuthTime time.Time `json:"auth_time"`
}

// AccessRequest is a person's request for access and its decision.
type AccessRequest struct {
	ID            string       `json:"id"`
	User          RequestUser  `json:"user"`
	Name          string       `json:"name"`
	Team          string       `json:"team"`
	Purpose       string       `json:"purpose"`
	RequestedRole string       `json:"requested_role"`
	Status        string       `json:"status"`
	Role          string       `json:"role"`
	Comment       string       `json:"comment"`
	ReviewedBy    *RequestUser `json:"reviewed_by"`
	CreatedAt     time.Time    `json:"created_at"`
	DecidedAt     *time.Time   `json:"decided_at"`
	ExpiresAt     *time.Time   `json:"expires_at"`
}

// RequestExpiry is what the expiry of one access request writes with it.
type RequestExpiry struct {
	Outbox []OutboxMessage
	Audit  AuditEvent
}

// Elevation is an active user's request to hold a higher role for a while,
// and its decision. FromRole is the role they fall back to: theirs when they
// asked, and as of the approval once approved.
type Elevation struct {
	ID              string       `json:"id"`
	User            RequestUser  `json:"user"`
	FromRole        string       `json:"from_role"`
	Role            string       `json:"role"`
	DurationSeconds int64        `json:"duration_seconds"`
	Reason          string       `json:"reason"`
	Status          string       `json:"status"`
	Comment         string       `json:"comment"`
	ReviewedBy      *RequestUser `json:"reviewed_by"`
	CreatedAt       time.Time    `json:"created_at"`
	DecidedAt       *time.Time   `json:"decided_at"`
	ExpiresAt       *time.Time   `json:"expires_at"` // approvals: decided_at + the duration
	EndedAt         *time.Time   `json:"ended_at"`
}

// ElevationFilter selects elevations, oldest first. Empty fields match everything.
type ElevationFilter struct {
	UserID string
	Status string
}

// ElevationDecision is a reviewer's verdict on a pending elevation, applied
// atomically with the user's new role, the outbox messages and the audit event.
type ElevationDecision struct {
	ID      string
	Approve bool
	// FromRole is the user's role the approval was checked against: the
	// approval fails with ErrConflict when the user no longer has it.
	FromRole   string
	Comment    string
	ReviewerID string
	Now        time.Time
	Outbox     []OutboxMessage
	Audit      AuditEvent
}

// RequestUser is the short form of a user shown inside an access request.
type RequestUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Decision is a reviewer's verdict on a pending access request. It is applied
// atomically with the user's new status, the outbox messages and the audit event.
type Decision struct {
	RequestID  string
	Approve    bool
	Role       string // for approvals
	Comment    string
	ReviewerID string
	ExpiresAt  *time.Time
	Now        time.Time
	Outbox     []OutboxMessage
	Audit      AuditEvent
}

// AuditEvent is one security-relevant event.
type AuditEvent struct {
	ID        int64          `json:"id"`
	Time      time.Time      `json:"time"`
	Type      string         `json:"type"`
	ActorID   string         `json:"actor_id,omitempty"`
	TargetID  string         `json:"target_id,omitempty"`
	IP        string         `json:"ip,omitempty"`
	UserAgent string         `json:"user_agent,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
}

// AuditFilter selects audit events, newest first. Before is an exclusive ID cursor.
type AuditFilter struct {
	UserID string // actor or target
	Type   string
	Before int64
	Limit  int
}

// OutboxMessage is a notification waiting for delivery.
type OutboxMessage struct {
	ID            string
	Channel       string // "webhook" or "email"
	Payload       []byte // channel-specific JSON
	Attempts      int
	NextAttemptAt time.Time
	CreatedAt     time.Time
	DeliveredAt   *time.Time
	LastError     string
}

// UserFilter selects users, in creation order. Cursor is opaque, from a previous page.
type UserFilter struct {
	Status string
	Role   string
	Query  string // substring of email or name, case-insensitive
	Limit  int
	Cursor string
}

// SigningKey is a key pair of Gatehouse's. PrivateSealed is encrypted by the
// caller before it reaches the store. A key is published from CreatedAt; it
// signs from ActivatedAt (nil while it is the published next key) until
// RetiredAt, when a newer key took over, and its public key stays published
// until PublishUntil.
type SigningKey struct {
	ID            string // kid
	Algorithm     string
	PrivateSealed []byte
	PublicJWK     []byte
	CreatedAt     time.Time
	ActivatedAt   *time.Time
	RetiredAt     *time.Time
	PublishUntil  *time.Time
}

// Token kinds.
const (
	TokenPersonal = "personal"
	TokenUser     = "user"
	TokenSystem   = "system"
)

// APIToken is the metadata of a Gatehouse API token. The token string itself
// is never stored: it is a signed JWT whose jti is ID.
type APIToken struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`              // personal, user or system
	UserID     string     `json:"user_id,omitempty"` // the subject; empty for system tokens
	CreatedBy  string     `json:"created_by"`        // user ID of the creator
	Scope      []string   `json:"scope"`
	Models     []string   `json:"models,omitempty"` // nil: every model the role may use
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	// Limits are the token's own quotas, as its claims carry them; nil: none
	// (zero limits are stored as none).
	Limits *quota.Limits `json:"limits,omitempty"`
	// KeyID is the kid of the key that signed the token, so that replacing a
	// key can revoke exactly its tokens; empty for tokens from before it was
	// recorded.
	KeyID string `json:"-"`
}

// TokenFilter selects tokens, newest first. Empty fields match everything.
type TokenFilter struct {
	UserID    string // subject user
	CreatedBy string
	Kind      string
	// Active leaves out revoked and expired tokens (as of Now).
	Active bool
	Now    time.Time
}

// RevokedToken is an entry of the revocation list.
type RevokedToken struct {
	ID        string
	ExpiresAt time.Time
	RevokedAt time.Time
}

// Store is every backend's contract. All methods honour ctx.
type Store interface {
	Ping(ctx context.Context) error
	Close() error

	// RecordLogin creates the user on first sign-in, refreshes email, name and
	// last_login_at afterwards, and returns the current record.
	RecordLogin(ctx context.Context, info LoginInfo) (User, error)
	GetUser(ctx context.Context, id string) (User, error)
	ListUsers(ctx context.Context, f UserFilter) (users []User, nextCursor string, err error)
	// SetUserRole and SetUserStatus refuse with ErrConflict to leave no active admin.
	// SetUserRole also ends the user's approved elevation (status ended): the
	// role someone set is not undone when the elevation's time is up.
	SetUserRole(ctx context.Context, id, role string, audit AuditEvent) (User, error)
	// SetUserStatus to anything but active also ends the user's sessions and
	// revokes their API tokens, in the same transaction: reactivation revives
	// nothing.
	SetUserStatus(ctx context.Context, id, status string, audit AuditEvent) (User, error)
	// SetUserLimits sets the user's own limits (nil or zero limits clear them)
	// with its audit event, in one transaction.
	SetUserLimits(ctx context.Context, id string, limits *quota.Limits, audit AuditEvent) (User, error)
	// ExpireAccess moves an active user whose grant ended back to pending,
	// ending their sessions and revoking their tokens like SetUserStatus.
	ExpireAccess(ctx context.Context, id string, now time.Time) (User, error)
	DeleteUser(ctx context.Context, id string, audit AuditEvent) error

	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	TouchSession(ctx context.Context, id string, at time.Time) error
	// RotateSession replaces oldID by next atomically; ErrNotFound when oldID is gone.
	RotateSession(ctx context.Context, oldID string, next Session) error
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID string) error
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
	// CountActiveSessions counts the sessions unexpired at now and seen since seenSince.
	CountActiveSessions(ctx context.Context, now, seenSince time.Time) (int, error)

	// CreateAccessRequest records a pending request with its audit event and
	// the outbox messages telling its reviewers, in one transaction; it fails
	// with ErrConflict while the user has a pending one.
	CreateAccessRequest(ctx context.Context, r AccessRequest, audit AuditEvent, outbox ...OutboxMessage) (AccessRequest, error)
	GetAccessRequest(ctx context.Context, id string) (AccessRequest, error)
	LatestAccessRequest(ctx context.Context, userID string) (AccessRequest, error)
	// ListAccessRequests lists by status ("" or "all" for every status), oldest first.
	ListAccessRequests(ctx context.Context, status string) ([]AccessRequest, error)
	// DecideAccessRequest fails with ErrConflict unless the request is pending;
	// of concurrent calls exactly one succeeds.
	DecideAccessRequest(ctx context.Context, d Decision) (AccessRequest, error)
	// ExpireAccessRequests expires the requests still pending that were
	// created before cutoff, at most limit of them, oldest first: each one's
	// status becomes expired and its decided_at now, in a transaction of its
	// own with what follow returns for it (follow gets the request as it
	// reads expired and must not call the store). Of concurrent callers, and
	// against a concurrent decision, exactly one wins each request. It returns
	// the requests it expired, also when it stops at an error.
	ExpireAccessRequests(ctx context.Context, cutoff, now time.Time, limit int, follow func(AccessRequest) (RequestExpiry, error)) ([]AccessRequest, error)

	// CreateElevation records a pending elevation with its audit event and
	// the outbox messages telling its reviewers, in one transaction; it fails
	// with ErrConflict while the user has one pending or approved.
	CreateElevation(ctx context.Context, e Elevation, audit AuditEvent, outbox ...OutboxMessage) (Elevation, error)
	GetElevation(ctx context.Context, id string) (Elevation, error)
	ListElevations(ctx context.Context, f ElevationFilter) ([]Elevation, error)
	// DecideElevation fails with ErrConflict unless the elevation is pending
	// (of concurrent calls exactly one succeeds) and, for an approval, the
	// user still has d.FromRole or the approval would leave no active admin.
	// An approval gives the user the elevation's role until now + its
	// duration.
	DecideElevation(ctx context.Context, d ElevationDecision) (Elevation, error)
	// ExpireElevations ends the approved elevations whose expires_at is not
	// after now, at most limit of them, soonest first, each in a transaction
	// of its own with what follow returns for it (follow gets the elevation as
	// it reads ended and must not call the store). A user who still holds the
	// elevated role gets FromRole back (status expired); one whose role
	// someone changed keeps it (status ended). An elevation whose fall back
	// would leave no active admin stays approved, for a later pass. Of
	// concurrent callers exactly one ends each elevation. It returns the
	// elevations it ended, also when it stops at an error.
	ExpireElevations(ctx context.Context, now time.Time, limit int, follow func(Elevation) (RequestExpiry, error)) ([]Elevation, error)

	AppendAudit(ctx context.Context, e AuditEvent) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)

	EnqueueOutbox(ctx context.Context, msgs ...OutboxMessage) error
	// DueOutbox returns undelivered messages whose NextAttemptAt ≤ now, oldest first.
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxMessage, error)
	// ClaimOutbox claims due messages that no live claim holds, for lease:
	// of concurrent callers (any instance) each message goes to one. Marking
	// it delivered or failed ends the claim.
	ClaimOutbox(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]OutboxMessage, error)
	MarkOutboxDelivered(ctx context.Context, id string, at time.Time) error
	MarkOutboxFailed(ctx context.Context, id string, next time.Time, lastErr string) error
	// OutboxBacklog counts the messages not delivered yet.
	OutboxBacklog(ctx context.Context) (int, error)

	// PutSigningKey stores a new key; ErrConflict when its ID exists.
	PutSigningKey(ctx context.Context, k SigningKey) error
	// ListSigningKeys returns every key still to be published, newest first.
	ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error)
	RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error
	// PromoteSigningKey makes the waiting key id sign from at, retires every
	// other key that signed (published until publishUntil) and stores next,
	// unless nil, as a new waiting key, in one transaction. It returns the
	// retired IDs; ErrConflict when id is not waiting (of concurrent
	// promotions exactly one wins).
	PromoteSigningKey(ctx context.Context, id string, at, publishUntil time.Time, next *SigningKey) (retired []string, err error)
	// ReplaceSigningKeys withdraws every key that signs or waits (retired and
	// unpublished at once), revokes the live API tokens they signed, each
	// audited as token.revoked (reason key_withdrawn) by actorID, and stores
	// fresh, in one transaction. It returns the withdrawn IDs and how many
	// tokens it revoked.
	ReplaceSigningKeys(ctx context.Context, fresh []SigningKey, at time.Time, actorID string) (withdrawn []string, revokedTokens int, err error)

	GetSetting(ctx context.Context, key string) ([]byte, error)
	PutSetting(ctx context.Context, key string, value []byte) error
	// PutSettingIf replaces the value only while it still is expected (nil:
	// absent), else ErrConflict: of concurrent writers exactly one wins.
	PutSettingIf(ctx context.Context, key string, expected, value []byte) error

	TokenStore
	UsageStore
	BreakGlassStore
}

// TokenStore keeps API token metadata; it is part of Store, and DeleteUser
// also revokes the deleted user's tokens (revoked_at = the deletion's audit
// time). Token records outlive their user for listing and audit.
type TokenStore interface {
	// CreateToken stores token metadata (ID given by the caller: it is the jti).
	CreateToken(ctx context.Context, t APIToken, audit AuditEvent) (APIToken, error)
	GetToken(ctx context.Context, id string) (APIToken, error)
	ListTokens(ctx context.Context, f TokenFilter) ([]APIToken, error)
	// RevokeToken sets revoked_at once; revoking again returns the token as it
	// is (idempotent). ErrNotFound for an unknown ID.
	RevokeToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (APIToken, error)
	// RevokedTokens lists revoked tokens that have not expired by now: the
	// revocation list every instance keeps in memory.
	RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error)
	// RevokedTokensSince lists the tokens revoked at or after since that have
	// not expired by now, for reading the revocation list incrementally.
	RevokedTokensSince(ctx context.Context, now, since time.Time) ([]RevokedToken, error)
	// RevokeSystemTokensOf revokes the live system tokens created by a user,
	// auditing each as token.revoked with the given reason; it returns how many.
	RevokeSystemTokensOf(ctx context.Context, creatorID string, at time.Time, actorID, reason string) (int, error)
	// MarkTokensUsed records last-use times in one batch (unknown IDs are ignored).
	MarkTokensUsed(ctx context.Context, used map[string]time.Time) error
}
