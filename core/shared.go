package core

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/store"
)

// Caddy provisions the new configuration before it stops the old one, so on
// `caddy reload` two runtimes live side by side for a moment. What is opened
// once per process — the store's connection pool, the Redis client — is
// shared between them through a caddy.UsagePool keyed by its configuration:
// an unchanged store or Redis line keeps its connections across reloads.
//
// The usage meter is shared with its store: a request the old configuration
// let through may end after that configuration stopped, and what it meters
// then is written by the flush worker of the next one. When the last runtime
// gives the store back, the meter is flushed once more before the store
// closes.
var (
	sharedStores = caddy.NewUsagePool()
	sharedRedis  = caddy.NewUsagePool()
)

type pooledStore struct {
	store.Store
	meter *meter
}

func (p pooledStore) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := p.meter.flush(ctx, p.Store); err != nil {
		caddy.Log().Named("gatehouse").Error("writing the last usage before the store closes; it is lost",
			zap.Int("minutes", n), zap.Error(err))
	}
	return p.Store.Close()
}

// acquireStore opens the store, or shares the one another runtime of this
// process opened with the same configuration; release gives it back.
func acquireStore(ctx context.Context, driver, dsn string, timeout time.Duration) (st store.Store, m *meter, release func(), err error) {
	key := fmt.Sprintf("%s\x00%s\x00%s", driver, dsn, timeout)
	v, _, err := sharedStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := openStore(ctx, driver, dsn, timeout)
		if err != nil {
			return nil, err
		}
		return pooledStore{st, new(meter)}, nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	p := v.(pooledStore)
	return p.Store, p.meter, func() { _, _ = sharedStores.Delete(key) }, nil
}

type pooledRedis struct{ *redis.Client }

func (p pooledRedis) Destruct() error { return p.Client.Close() }

// acquireRedis is acquireStore for the Redis client.
func acquireRedis(url string) (*redis.Client, func(), error) {
	v, _, err := sharedRedis.LoadOrNew(url, func() (caddy.Destructor, error) {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		return pooledRedis{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(pooledRedis).Client, func() { _, _ = sharedRedis.Delete(url) }, nil
}
