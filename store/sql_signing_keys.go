package store

import (
	"context"
	"fmt"
	"time"
)

// PutSigningKey stores a new key; ErrConflict when its ID exists.
func (s *sqlStore) PutSigningKey(ctx context.Context, k SigningKey) error {
	_, err := s.db.exec(ctx, `INSERT INTO signing_keys (id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Algorithm, k.PrivateSealed, k.PublicJWK, s.encodeTime(nowOr(k.CreatedAt)), s.encodeTimePtr(k.RetiredAt), s.encodeTimePtr(k.PublishUntil))
	if err != nil {
		return fmt.Errorf("put signing key %s: %w", k.ID, err)
	}
	return nil
}

func scanSigningKey(row scanner) (SigningKey, error) {
	var k SigningKey
	err := row.Scan(&k.ID, &k.Algorithm, &k.PrivateSealed, &k.PublicJWK, timeCol{&k.CreatedAt},
		nullTimeCol{&k.RetiredAt}, nullTimeCol{&k.PublishUntil})
	return k, err
}

// ListSigningKeys returns every key still to be published, newest first.
func (s *sqlStore) ListSigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	out, err := queryAll(ctx, s.db, scanSigningKey, `SELECT id, algorithm, private_sealed, public_jwk, created_at, retired_at, publish_until
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
