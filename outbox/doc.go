// Package outbox is the producer side of txoutbox: it writes outbox entries
// inside the caller's own database transaction, so that an entry exists if
// and only if that transaction commits.
//
// # Enqueueing
//
// A payload is any Go type that names its topic:
//
//	type WelcomeEmail struct {
//		UserID int64  `json:"user_id"`
//		Email  string `json:"email"`
//	}
//
//	func (WelcomeEmail) Topic() string { return "email.welcome" }
//
// Write the domain row and the entry in one transaction:
//
//	tx, err := pool.Begin(ctx)
//	...
//	_, err = tx.Exec(ctx, `INSERT INTO users (id, email) VALUES ($1, $2)`, id, email)
//	...
//	_, err = outbox.Enqueue(ctx, tx, WelcomeEmail{UserID: id, Email: email},
//		outbox.WithKey(fmt.Sprintf("welcome:%d", id)))
//	...
//	err = tx.Commit(ctx)
//
// [Enqueue] takes a [Querier]: pgx.Tx, *pgx.Conn and *pgxpool.Pool satisfy it
// directly; for database/sql wrap a *sql.Tx (opened with the pgx driver) with
// [SQL]. [EnqueueBatch] writes many entries in one round trip.
//
// # Options
//
// [WithKey] sets the idempotency key: enqueueing the same topic and key twice
// yields one entry, and the second call returns the first entry's id with
// [Enqueued.Duplicate] set. [WithOrderingKey] makes entries that share a key
// run one at a time, in id order. [WithQueue] and [WithPriority] choose a
// lane; [WithDelay] and [WithRunAt] defer work; [WithMaxAttempts] bounds
// retries; [WithHeaders] carries metadata such as trace context.
//
// # Reading entries back
//
// [Get] and [GetByKey] report an entry's state, for apps that show completion
// to their users. [ListDead], [Replay] and [Discard] manage dead-lettered
// entries; [CountDead] counts what a [Selection] names, for a dry run.
//
// # Waiting for completion
//
// [Wait] blocks until an entry is done or dead and returns it with the
// result its handler reported; it is woken by the relay's notification on
// [ProgressChannel], with a slow poll as the fallback. A [Watcher] does the
// same for many concurrent waiters over one LISTEN connection, and follows
// groups of entries by correlation id ([WithCorrelationID],
// [ListByCorrelation]); package progress streams it to browsers as
// Server-Sent Events. [Producer.Headers] stores context-derived headers,
// such as the request's trace context (package txotel), with every entry.
//
// # Errors
//
// Invalid input returns an error for which errors.Is reports [ErrInvalid]
// (and errors.As yields an [*InvalidError]); a payload over the limit returns
// [ErrPayloadTooLarge]; a nil querier returns [ErrNilQuerier]; a finished
// transaction returns [ErrTxClosed]. Nothing is written when an error is
// returned before the insert.
//
// This package imports nothing from the relay: an application that only
// enqueues does not link the relay engine.
package outbox
