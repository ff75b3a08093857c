package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/store"
)

// ProgressChannel is the PostgreSQL notification channel on which relays
// announce entries whose state changed: finished (done or dead), failed and
// scheduled for a retry, handed back at shutdown, or rescued after a lost
// lease. The payload is the entries' ids, comma-separated; a batch of
// outcomes sends one notification per 300 ids. [Wait] and [Watcher] listen
// on it; any client may (LISTEN txoutbox_progress). Claims (pending to
// running) are not announced.
const ProgressChannel = store.ProgressChannel

// NotifyChannel is the PostgreSQL notification channel on which the
// schema's insert trigger wakes relays when an entry commits (and [Replay]
// when it returns dead entries to pending). The payload is the queue name.
// Part of the schema's contract (docs/schema.md).
const NotifyChannel = store.NotifyChannel

// HeaderCorrelationID is the header that [WithCorrelationID] sets: a
// caller's name for a group of entries, such as the request or the export
// job that enqueued them. [ListByCorrelation] and [Watcher.FollowCorrelation]
// select entries by it. Plain SQL producers set it in the headers column:
// '{"correlation_id": "export-17"}'.
const HeaderCorrelationID = "correlation_id"

// DefaultPollInterval is how often [Wait] and a [Watcher] with no
// PollInterval re-read an entry when no notification arrives: a fallback
// for relays that cannot notify (an older version) and for connections
// that cannot LISTEN (a pooler in transaction mode), not the normal path.
const DefaultPollInterval = 5 * time.Second

// WithCorrelationID stores id in the entry's headers under
// HeaderCorrelationID, so that the entries one request (or one job)
// enqueued can be followed together. It adds to WithHeaders.
func WithCorrelationID(id string) Option {
	return WithHeaders(map[string]string{HeaderCorrelationID: id})
}

// Wait blocks until the committed entry id is done or dead, and returns it
// as it then is, the handler's result included. A dead entry is returned
// with a nil error: check State (and LastError). Wait returns ErrNotFound
// at once when there is no such entry — call it after the enqueueing
// transaction commits — and a wrapped context error when ctx ends first.
//
// Wait holds one connection of pool for as long as it waits, LISTENs on
// ProgressChannel and re-reads the entry only when a relay announces it,
// or every DefaultPollInterval as a fallback; it UNLISTENs before handing
// the connection back. For many concurrent waits (one per web request, or
// Server-Sent Events), share one LISTEN connection through a [Watcher].
func Wait(ctx context.Context, pool *pgxpool.Pool, id int64) (*Entry, error) {
	return waitPool(ctx, pool, id, DefaultPollInterval)
}

// waitPool is Wait with the poll interval as a parameter (for tests).
func waitPool(ctx context.Context, pool *pgxpool.Pool, id int64, poll time.Duration) (*Entry, error) {
	if pool == nil {
		return nil, ErrNilQuerier
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, waitError(ctx, id, err)
	}
	listening := true
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ProgressChannel}.Sanitize()); err != nil {
		if ctx.Err() != nil || !isPgError(err) {
			conn.Release()
			return nil, waitError(ctx, id, err)
		}
		listening = false // e.g. a pooler that refuses LISTEN: poll
	}
	defer func() {
		if listening && !conn.Conn().IsClosed() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, err := conn.Exec(uctx, "UNLISTEN *"); err != nil {
				// Never hand back a connection that may still listen.
				_ = conn.Conn().Close(uctx)
			}
			cancel()
		}
		conn.Release()
	}()
	for {
		e, err := Get(ctx, conn, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, err
			}
			return nil, waitError(ctx, id, err)
		}
		if e.State.Finished() {
			return e, nil
		}
		if err := waitForMention(ctx, conn.Conn(), listening, id, poll); err != nil {
			return nil, waitError(ctx, id, err)
		}
	}
}

// waitForMention returns when a notification on conn names id or when poll
// has passed, whichever is first; without listening it just sleeps.
func waitForMention(ctx context.Context, conn *pgx.Conn, listening bool, id int64, poll time.Duration) error {
	deadline := time.Now().Add(poll)
	if !listening {
		t := time.NewTimer(poll)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			return nil
		}
	}
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case err != nil && (errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)):
			return nil // poll
		case err != nil:
			return err
		case n.Channel == ProgressChannel && mentions(n.Payload, id):
			return nil
		}
	}
}

// mentions reports whether a ProgressChannel payload lists id.
func mentions(payload string, id int64) bool {
	want := strconv.FormatInt(id, 10)
	for s := range strings.SplitSeq(payload, ",") {
		if s == want {
			return true
		}
	}
	return false
}

// parseIDs reads a ProgressChannel payload; malformed parts are skipped.
func parseIDs(payload string) []int64 {
	var ids []int64
	for s := range strings.SplitSeq(payload, ",") {
		if id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func isPgError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// waitError wraps err, preferring the context's cause once ctx has ended.
func waitError(ctx context.Context, id int64, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("outbox: wait for entry %d: %w", id, err)
}
