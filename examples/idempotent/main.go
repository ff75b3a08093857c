// Command idempotent shows a transactional handler whose database effect
// happens exactly once, however often its message arrives or its attempt
// fails.
//
// A payment provider delivers "payment succeeded" events at least once:
// the same event may come twice in a row, or again days later. The
// application enqueues each delivery with the provider's event id as the
// key, and a transactional handler (relay.HandleTx) credits the account: a
// ledger row and a balance update, written through the relay's transaction.
// That transaction also records the entry's processed key and marks the
// entry done, so:
//
//   - the same event enqueued again while its entry exists is a duplicate:
//     nothing new is queued;
//   - an attempt that fails after writing rolls back its writes, and the
//     retry writes them once;
//   - the same event enqueued again after its entry was deleted (retention)
//     is skipped: its key is processed, and the handler does not run.
//
// The ledger has no unique constraint on the event id, on purpose: the
// exactly-once effect here comes from the transaction, not from the
// schema. (In an application, add the constraint too.)
//
// Run it with:
//
//	go run ./examples/idempotent
//
// Like the quickstart, it makes a throwaway database on the server in
// DATABASE_URL, or, without DATABASE_URL, on a throwaway server it starts
// and removes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
)

func main() {
	tclog.SetDefault(tclog.NewNoopLogger())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := withDatabase(ctx, os.Stdout, os.Getenv("DATABASE_URL"), func(pool *pgxpool.Pool) error {
		return run(ctx, os.Stdout, pool)
	})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "idempotent:", err)
		os.Exit(1)
	}
}

// withDatabase calls fn with a pool on a throwaway, migrated database on
// the server at serverURL, or on a throwaway server when serverURL is
// empty, and removes what it made afterwards.
func withDatabase(ctx context.Context, out io.Writer, serverURL string, fn func(*pgxpool.Pool) error) error {
	return scratchdb.Run(ctx, out, serverURL, "txoutbox_idempotent", fn)
}
