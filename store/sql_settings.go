package store

import (
	"context"
	"fmt"
)

// GetSetting returns the value stored under key.
func (s *sqlStore) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	if err := s.db.queryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v); err != nil {
		return nil, fmt.Errorf("get setting %s: %w", key, err)
	}
	return v, nil
}

// PutSettingIf replaces key's value only while it still is expected (nil:
// the key is absent); otherwise ErrConflict. One statement, so concurrent
// writers from any instance cannot both win.
func (s *sqlStore) PutSettingIf(ctx context.Context, key string, expected, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	var (
		n   int64
		err error
	)
	if expected == nil {
		n, err = s.db.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value)
	} else {
		n, err = s.db.exec(ctx, `UPDATE settings SET value = $1 WHERE key = $2 AND value = $3`, value, key, expected)
	}
	if err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("put setting %s: changed meanwhile: %w", key, ErrConflict)
	}
	return nil
}

// PutSetting stores value under key, replacing any previous one.
func (s *sqlStore) PutSetting(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := s.db.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}
