package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/quota"
)

// tokenColumns reads the JSON lists and the limits as text, which both
// backends can cast to.
const tokenColumns = `id, name, kind, COALESCE(user_id, ''), created_by, CAST(scope AS TEXT), CAST(models AS TEXT),
	created_at, expires_at, last_used_at, revoked_at, COALESCE(kid, ''), CAST(limits AS TEXT)`

func scanToken(row scanner) (APIToken, error) {
	var t APIToken
	err := row.Scan(&t.ID, &t.Name, &t.Kind, &t.UserID, &t.CreatedBy, jsonCol[[]string]{&t.Scope, "list"}, jsonCol[[]string]{&t.Models, "list"},
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, nullTimeCol{&t.LastUsedAt}, nullTimeCol{&t.RevokedAt}, &t.KeyID,
		jsonCol[*quota.Limits]{&t.Limits, "limits"})
	return t, err
}

// encStrings stores a list as a JSON array; nil stays NULL, so that "no list"
// (every model) and "an empty list" (no model) remain different.
func encStrings(v []string) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// encLimits stores limits as a JSON object; nil and zero limits stay NULL,
// so that a token without limits of its own reads back as nil.
func encLimits(l *quota.Limits) (any, error) {
	if l == nil || l.IsZero() {
		return nil, nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// tokenArgs validates t and returns the values of an api_tokens INSERT, in
// column order; user_id, models, kid and limits stay NULL when empty.
func (s *sqlStore) tokenArgs(t APIToken) ([]any, error) {
	if t.ID == "" {
		return nil, errors.New("empty token ID")
	}
	scope := t.Scope
	if scope == nil {
		scope = []string{}
	}
	scopeJSON, err := encStrings(scope)
	if err != nil {
		return nil, fmt.Errorf("token scope: %w", err)
	}
	models, err := encStrings(t.Models)
	if err != nil {
		return nil, fmt.Errorf("token models: %w", err)
	}
	limits, err := encLimits(t.Limits)
	if err != nil {
		return nil, fmt.Errorf("token limits: %w", err)
	}
	var userID, kid any
	if t.UserID != "" {
		userID = t.UserID
	}
	if t.KeyID != "" {
		kid = t.KeyID
	}
	return []any{t.ID, t.Name, t.Kind, userID, t.CreatedBy, scopeJSON, models,
		s.encodeTime(nowOr(t.CreatedAt)), s.encodeTime(t.ExpiresAt), kid, limits}, nil
}

func getToken(ctx context.Context, q db, id string) (APIToken, error) {
	t, err := scanToken(q.queryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return APIToken{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return t, nil
}

// CreateToken stores a token's metadata with its audit event; ErrConflict
// when the ID exists, ErrNotFound when the subject user does not.
func (s *sqlStore) CreateToken(ctx context.Context, t APIToken, audit AuditEvent) (APIToken, error) {
	args, err := s.tokenArgs(t)
	if err != nil {
		return APIToken{}, fmt.Errorf("create token: %w", err)
	}
	var out APIToken
	err = s.inTx(ctx, func(tx db) error {
		// The user's row is held until commit (SQLite's single writer holds
		// everything), so that a concurrent DeleteUser cannot slip in between
		// this check and the insert and leave a live token of a deleted user:
		// it waits, then revokes the token; after a committed deletion the
		// token is refused.
		if t.UserID != "" {
			var one int
			if err := tx.queryRow(ctx, `SELECT 1 FROM users WHERE id = $1`+s.forShare(), t.UserID).Scan(&one); err != nil {
				return fmt.Errorf("user %s: %w", t.UserID, err)
			}
		}
		if _, err := tx.exec(ctx, `INSERT INTO api_tokens (id, name, kind, user_id, created_by, scope, models, created_at, expires_at, kid, limits)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, args...); err != nil {
			return err
		}
		if err := s.appendAudit(ctx, tx, audit); err != nil {
			return err
		}
		out, err = getToken(ctx, tx, t.ID)
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return out, nil
}

// GetToken returns the token with id.
func (s *sqlStore) GetToken(ctx context.Context, id string) (APIToken, error) {
	return getToken(ctx, s.db, id)
}

// ListTokens returns the tokens f selects, newest first.
func (s *sqlStore) ListTokens(ctx context.Context, f TokenFilter) ([]APIToken, error) {
	var w where
	if f.UserID != "" {
		w.add("user_id = ?", f.UserID)
	}
	if f.CreatedBy != "" {
		w.add("created_by = ?", f.CreatedBy)
	}
	if f.Kind != "" {
		w.add("kind = ?", f.Kind)
	}
	if f.Active {
		w.add("revoked_at IS NULL AND expires_at > ?", s.encodeTime(nowOr(f.Now)))
	}
	out, err := queryAll(ctx, s.db, scanToken,
		`SELECT `+tokenColumns+` FROM api_tokens`+w.String()+` ORDER BY created_at DESC, id DESC`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes a token at the given time; the first revocation's time
// stays and only it is audited. A concurrent second revocation waits for the
// first to commit, then finds revoked_at set and changes nothing.
func (s *sqlStore) RevokeToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (APIToken, error) {
	var out APIToken
	err := s.inTx(ctx, func(tx db) error {
		n, err := tx.exec(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`,
			s.encodeTime(at), id)
		if err != nil {
			return err
		}
		if n == 1 {
			if err := s.appendAudit(ctx, tx, audit); err != nil {
				return err
			}
		}
		out, err = getToken(ctx, tx, id)
		return err
	})
	if err != nil {
		return APIToken{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return out, nil
}

// revokeTokens revokes the live tokens matching where ($2 is arg) and audits
// each as token.revoked.
func (s *sqlStore) revokeTokens(ctx context.Context, tx db, where, arg string, at time.Time, actorID, reason string) (int, error) {
	type revoked struct{ id, kind, name, userID string }
	list, err := queryAll(ctx, tx, func(row scanner) (revoked, error) {
		var r revoked
		var userID *string
		err := row.Scan(&r.id, &r.kind, &r.name, &userID)
		if userID != nil {
			r.userID = *userID
		}
		return r, err
	}, `UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND `+where+` RETURNING id, kind, name, user_id`,
		s.encodeTime(at), arg)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens: %w", err)
	}
	for _, r := range list {
		if err := s.appendAudit(ctx, tx, AuditEvent{Time: at, Type: "token.revoked", ActorID: actorID, TargetID: r.userID,
			Detail: map[string]any{"token_id": r.id, "kind": r.kind, "name": r.name, "reason": reason}}); err != nil {
			return 0, err
		}
	}
	return len(list), nil
}

// RevokeSystemTokensOf revokes the live system tokens a user created.
func (s *sqlStore) RevokeSystemTokensOf(ctx context.Context, creatorID string, at time.Time, actorID, reason string) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx db) error {
		var err error
		n, err = s.revokeTokens(ctx, tx, `kind = 'system' AND created_by = $2`, creatorID, at, actorID, reason)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("revoke system tokens of %s: %w", creatorID, err)
	}
	return n, nil
}

func scanRevoked(row scanner) (RevokedToken, error) {
	var r RevokedToken
	err := row.Scan(&r.ID, timeCol{&r.ExpiresAt}, timeCol{&r.RevokedAt})
	return r, err
}

// RevokedTokens lists the revoked tokens that have not expired by now.
func (s *sqlStore) RevokedTokens(ctx context.Context, now time.Time) ([]RevokedToken, error) {
	out, err := queryAll(ctx, s.db, scanRevoked, `SELECT id, expires_at, revoked_at FROM api_tokens
		WHERE revoked_at IS NOT NULL AND expires_at > $1 ORDER BY revoked_at, id`, s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("revoked tokens: %w", err)
	}
	return out, nil
}

// RevokedTokensSince lists the tokens revoked at or after since that have not
// expired by now.
func (s *sqlStore) RevokedTokensSince(ctx context.Context, now, since time.Time) ([]RevokedToken, error) {
	out, err := queryAll(ctx, s.db, scanRevoked, `SELECT id, expires_at, revoked_at FROM api_tokens
		WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at, id`,
		s.encodeTime(since), s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("revoked tokens since %s: %w", since.Format(time.RFC3339), err)
	}
	return out, nil
}

// MarkTokensUsed records last-use times in one transaction; unknown IDs are
// ignored.
func (s *sqlStore) MarkTokensUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// Rows are locked in ID order, so that batches from several instances
	// touching the same tokens cannot deadlock.
	var argLists [][]any
	for _, id := range slices.Sorted(maps.Keys(used)) {
		argLists = append(argLists, []any{s.encodeTime(used[id]), id})
	}
	// last_used_at never moves back: batches from several instances may
	// arrive out of order.
	err := s.inTx(ctx, func(tx db) error {
		return tx.execEach(ctx, `UPDATE api_tokens SET last_used_at = $1
			WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, argLists)
	})
	if err != nil {
		return fmt.Errorf("mark %d tokens used: %w", len(used), err)
	}
	return nil
}
