package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gatehouse/gatehouse/quota"
)

// SetUserLimits sets a user's own limits with its audit event; nil or zero
// limits store NULL, so that a user without limits of their own reads as nil.
func (s *sqlStore) SetUserLimits(ctx context.Context, id string, limits *quota.Limits, audit AuditEvent) (User, error) {
	var enc any
	if limits != nil && !limits.IsZero() {
		b, err := json.Marshal(limits)
		if err != nil {
			return User{}, fmt.Errorf("set limits of user %s: %w", id, err)
		}
		enc = string(b)
	}
	var u User
	err := s.inTx(ctx, func(tx db) error {
		var err error
		u, err = scanUser(tx.queryRow(ctx, `UPDATE users SET limits = $1 WHERE id = $2 RETURNING `+userColumns, enc, id))
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return User{}, fmt.Errorf("set limits of user %s: %w", id, err)
	}
	return u, nil
}
