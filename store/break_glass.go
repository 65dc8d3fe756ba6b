package store

import (
	"context"
	"time"
)

// BreakGlassGrant is an emergency grant (spec §10, break-glass): its user
// holds Role until ExpiresAt. EndedAt is set once the end is recorded; the
// grant stays listed until another admin acknowledges it.
type BreakGlassGrant struct {
	ID             string       `json:"id"`
	User           RequestUser  `json:"user"`
	Role           string       `json:"role"`
	Reason         string       `json:"reason"`
	CodeUsed       bool         `json:"code_used"` // invoked with a sealed one-time code, not as a named user
	CreatedAt      time.Time    `json:"created_at"`
	ExpiresAt      time.Time    `json:"expires_at"`
	EndedAt        *time.Time   `json:"ended_at"`
	AcknowledgedBy *RequestUser `json:"acknowledged_by"`
	AcknowledgedAt *time.Time   `json:"acknowledged_at"`
}

// Active reports whether the grant gives its role at now.
func (g BreakGlassGrant) Active(now time.Time) bool {
	return g.EndedAt == nil && now.Before(g.ExpiresAt)
}

// BreakGlassFilter selects grants, newest first. Empty fields match everything.
type BreakGlassFilter struct {
	Active         bool // not ended and expiring after Now
	Unacknowledged bool
	Now            time.Time
	Limit          int // default and maximum 500
}

// BreakGlassStore keeps the sealed one-time codes and the emergency grants;
// it is part of Store.
type BreakGlassStore interface {
	// SealBreakGlassCode stores the hash of a new one-time code with its
	// audit event; ErrConflict when the hash exists.
	SealBreakGlassCode(ctx context.Context, hash string, at time.Time, audit AuditEvent) error
	// CreateBreakGlassGrant records g (ID, user, role, reason, times) with
	// its audit event and outbox messages in one transaction. With a
	// codeHash the code is used by g's user in the same transaction:
	// ErrNotFound when it is unknown or already used. ErrConflict while the
	// user has a grant not ended; nothing is written then, the code stays
	// unused.
	CreateBreakGlassGrant(ctx context.Context, g BreakGlassGrant, codeHash string, audit AuditEvent, outbox ...OutboxMessage) (BreakGlassGrant, error)
	GetBreakGlassGrant(ctx context.Context, id string) (BreakGlassGrant, error)
	ListBreakGlassGrants(ctx context.Context, f BreakGlassFilter) ([]BreakGlassGrant, error)
	// AcknowledgeBreakGlassGrant records who acknowledged the grant, with
	// its audit event; ErrConflict when it was acknowledged already (of
	// concurrent calls exactly one succeeds), ErrNotFound when unknown.
	AcknowledgeBreakGlassGrant(ctx context.Context, id, byUserID string, at time.Time, audit AuditEvent) (BreakGlassGrant, error)
	// EndBreakGlassGrants ends the grants not ended whose expiry is at or
	// before now, at most limit of them, each with the audit event audit
	// returns for it (audit must not call the store), in one transaction.
	// Of concurrent callers exactly one ends each grant. It returns them.
	EndBreakGlassGrants(ctx context.Context, now time.Time, limit int, audit func(BreakGlassGrant) AuditEvent) ([]BreakGlassGrant, error)
}
