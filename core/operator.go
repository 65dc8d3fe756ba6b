package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// The command line (spec §11) acts as the operator, who holds the store and
// the configuration: it opens a runtime with Open (no workers), changes
// authority through the same methods as the API, with Operator as the
// actor, and announces the changes with FlushAnnouncements before it exits.

// Operator is the subject of what the command line does: no person, the
// actor cli in the audit log and as a reviewer or a token's creator.
func Operator() *Subject {
	return &Subject{User: store.User{ID: ActorCLI, Name: "command line", Role: "admin", Status: store.StatusActive}}
}

// FlushAnnouncements publishes over Redis, now, the changes this runtime
// has queued for the other instances. A runtime that was not started (the
// command line) has no publisher running; without Redis it does nothing,
// and the servers read the change from the store at their next poll.
func (rt *Runtime) FlushAnnouncements(ctx context.Context) error {
	if rt.fanout == nil {
		return nil
	}
	for {
		select {
		case ev := <-rt.fanout.outbox:
			payload, _ := json.Marshal(ev)
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err := rt.fanout.rdb.Publish(pctx, fanoutChannel, payload).Err()
			cancel()
			if err != nil {
				return fmt.Errorf("announcing the change over redis (the servers read it from the store within %s): %w",
					pollRevocationsRedis, err)
			}
		default:
			return nil
		}
	}
}

// BackupSQLite writes a consistent copy of the configured SQLite store to
// out, which must not exist (VACUUM INTO: a running server may keep
// writing). It opens the store alone, as SealBreakGlassCode does.
func BackupSQLite(ctx context.Context, o Options, out string) error {
	if o.Store == nil || o.Store.Driver != "sqlite" {
		return errors.New("backup: the store is not sqlite")
	}
	st, err := openStore(ctx, o.Store.Driver, o.Store.DSN, time.Duration(o.StoreTimeout))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	return st.(*store.SQLite).BackupTo(ctx, out)
}
