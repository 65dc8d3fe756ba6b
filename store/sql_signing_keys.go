package store

import (
	"context"
	"fmt"
	"time"
)

const signingKeyColumns = `id, algorithm, private_sealed, public_jwk, created_at, activated_at, retired_at, publish_until`

// PutSigningKey stores a new key; ErrConflict when its ID exists.
func (s *sqlStore) PutSigningKey(ctx context.Context, k SigningKey) error {
	if err := s.putSigningKey(ctx, s.db, k); err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, err)
	}
	return nil
}

func (s *sqlStore) putSigningKey(ctx context.Context, q db, k SigningKey) error {
	_, err := q.exec(ctx, `INSERT INTO signing_keys (`+signingKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, s.encodeTime(nowOr(k.CreatedAt)),
		s.encodeTimePtr(k.ActivatedAt), s.encodeTimePtr(k.RetiredAt), s.encodeTimePtr(k.PublishUntil))
	return err
}

func scanSigningKey(row scanner) (SigningKey, error) {
	var k SigningKey
	err := row.Scan(&k.ID, &k.Algorithm, &k.PrivateSealed, &k.PublicJWK, timeCol{&k.CreatedAt},
		nullTimeCol{&k.ActivatedAt}, nullTimeCol{&k.RetiredAt}, nullTimeCol{&k.PublishUntil})
	return k, err
}

// ListSigningKeys returns every key still to be published, newest first.
func (s *sqlStore) ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	out, err := queryAll(ctx, s.db, scanSigningKey, `SELECT `+signingKeyColumns+`
		FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at DESC, id DESC`, s.encodeTime(now))
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return out, nil
}

// RetireSigningKey stops a key signing and schedules the end of its publication.
func (s *sqlStore) RetireSigningKey(ctx context.Context, id string, at, publishUntil time.Time) error {
	if err := affectedOne(s.db.exec(ctx, `UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE id = $3`,
		s.encodeTime(at), s.encodeTime(publishUntil), id)); err != nil {
		return fmt.Errorf("retire signing key %s: %w", id, err)
	}
	return nil
}

// errNotWaiting makes PromoteSigningKey's transaction roll back.
var errNotWaiting = fmt.Errorf("%w: the key is not waiting to sign", ErrConflict)

// PromoteSigningKey makes a waiting key sign, retires the keys that signed
// before it and stores the next waiting key, in one transaction. The
// conditional UPDATE decides concurrent promotions: the second waits for the
// first to commit, then finds the key activated and changes nothing.
func (s *sqlStore) PromoteSigningKey(ctx context.Context, id string, at, publishUntil time.Time, next *SigningKey) ([]string, error) {
	var retired []string
	err := s.inTx(ctx, func(tx db) error {
		n, err := tx.exec(ctx, `UPDATE signing_keys SET activated_at = $1
			WHERE id = $2 AND activated_at IS NULL AND retired_at IS NULL`, s.encodeTime(at), id)
		if err != nil {
			return err
		}
		if n != 1 {
			return errNotWaiting
		}
		retired, err = queryAll(ctx, tx, scanID, `UPDATE signing_keys SET retired_at = $1, publish_until = $2
			WHERE activated_at IS NOT NULL AND retired_at IS NULL AND id <> $3 RETURNING id`,
			s.encodeTime(at), s.encodeTime(publishUntil), id)
		if err != nil {
			return err
		}
		if next != nil {
			return s.putSigningKey(ctx, tx, *next)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("promote signing key %s: %w", id, err)
	}
	return retired, nil
}

// ReplaceSigningKeys withdraws the keys that sign or wait, revokes the
// tokens they signed and stores fresh ones, in one transaction: no instance
// ever reads a store without a key that signs, or with a withdrawn key's
// tokens still live.
func (s *sqlStore) ReplaceSigningKeys(ctx context.Context, fresh []SigningKey, at time.Time, actorID string) ([]string, int, error) {
	var withdrawn []string
	revoked := 0
	err := s.inTx(ctx, func(tx db) error {
		var err error
		withdrawn, err = queryAll(ctx, tx, scanID, `UPDATE signing_keys SET retired_at = $1, publish_until = $1
			WHERE retired_at IS NULL RETURNING id`, s.encodeTime(at))
		if err != nil {
			return err
		}
		for _, kid := range withdrawn {
			n, err := s.revokeTokens(ctx, tx, `kid = $2 AND expires_at > $1`, kid, at, actorID, "key_withdrawn")
			if err != nil {
				return err
			}
			revoked += n
		}
		for _, k := range fresh {
			if err := s.putSigningKey(ctx, tx, k); err != nil {
				return fmt.Errorf("put signing key %s: %w", k.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("replace signing keys: %w", err)
	}
	return withdrawn, revoked, nil
}

func scanID(row scanner) (string, error) {
	var id string
	err := row.Scan(&id)
	return id, err
}
