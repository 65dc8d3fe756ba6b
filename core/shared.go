package core

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/store"
)

// Caddy provisions the new configuration before it stops the old one, so on
// `caddy reload` two runtimes live side by side for a moment. What is opened
// once per process — the store's connection pool, the Redis client — is
// shared between them through a caddy.UsagePool keyed by its configuration:
// an unchanged store or Redis line keeps its connections across reloads.
var (
	sharedStores = caddy.NewUsagePool()
	sharedRedis  = caddy.NewUsagePool()
)

type pooledStore struct{ store.Store }

func (p pooledStore) Destruct() error { return p.Store.Close() }

// acquireStore opens the store, or shares the one another runtime of this
// process opened with the same configuration; release gives it back.
func acquireStore(ctx context.Context, driver, dsn string, timeout time.Duration) (st store.Store, release func(), err error) {
	key := fmt.Sprintf("%s\x00%s\x00%s", driver, dsn, timeout)
	v, _, err := sharedStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := openStore(ctx, driver, dsn, timeout)
		if err != nil {
			return nil, err
		}
		return pooledStore{st}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(pooledStore).Store, func() { _, _ = sharedStores.Delete(key) }, nil
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
