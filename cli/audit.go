package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/store"
)

// auditPage is how many events one read of the audit log returns.
const auditPage = 200

func (c *commands) auditCommand() *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "The audit log"}
	export := command("export", "Prints the audit log as JSON lines, oldest first", cobra.NoArgs, false,
		func(cmd *cobra.Command, _ []string) error {
			raw, _ := cmd.Flags().GetString("since")
			since, err := parseSince(raw, time.Now())
			if err != nil {
				return err
			}
			return c.withRuntime(cmd, func(ctx context.Context, rt *core.Runtime) error {
				return exportAudit(ctx, rt.Store, since, json.NewEncoder(cmd.OutOrStdout()))
			})
		})
	export.Flags().String("since", "", "Only events from this time on: RFC 3339 (2025-01-31T00:00:00Z) or a duration back from now (24h)")
	audit.AddCommand(export)
	return audit
}

// parseSince reads --since: a time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q must be an RFC 3339 time (2025-01-31T00:00:00Z) or a positive duration (24h)", s)
}

// exportAudit writes the events from since on, oldest first. The store
// lists newest first by ID cursor, so a first pass walks back to since
// keeping only each page's cursor, and a second reads the pages again from
// the oldest: memory holds one page, whatever the log's length. Events
// appended meanwhile are left out (the first pass fixed the newest ID).
func exportAudit(ctx context.Context, st store.Store, since time.Time, enc *json.Encoder) error {
	var cursors []int64 // the Before of each page, newest page first
	before := int64(0)
	for {
		page, err := st.ListAudit(ctx, store.AuditFilter{Before: before, Limit: auditPage})
		if err != nil {
			return fmt.Errorf("reading the audit log: %w", err)
		}
		if len(page) == 0 {
			break
		}
		if before == 0 {
			before = page[0].ID + 1
		}
		cursors = append(cursors, before)
		last := page[len(page)-1]
		if len(page) < auditPage || last.Time.Before(since) {
			break
		}
		before = last.ID
	}
	for _, cursor := range slices.Backward(cursors) {
		page, err := st.ListAudit(ctx, store.AuditFilter{Before: cursor, Limit: auditPage})
		if err != nil {
			return fmt.Errorf("reading the audit log: %w", err)
		}
		for _, e := range slices.Backward(page) {
			if e.Time.Before(since) {
				continue
			}
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
	}
	return nil
}
