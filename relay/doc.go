// Package relay is the consumer side of txoutbox: it claims committed outbox
// entries and dispatches them to typed handlers, retrying with backoff and
// dead-lettering what keeps failing.
//
// # Handlers
//
// Register one handler per topic in a [Handlers] registry. The payload type
// names the topic (see outbox.Message), so handlers are typed end to end:
//
//	h := relay.NewHandlers()
//	relay.Handle(h, func(ctx context.Context, e *relay.Entry[WelcomeEmail]) error {
//		return mailer.Send(ctx, e.Payload.Email, e.Key) // e.Key: same for every attempt
//	})
//	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[Invoice]) error {
//		_, err := tx.Exec(ctx, `INSERT INTO invoices ...`, ...)
//		return err // committed with the entry's completion, or not at all
//	})
//
// A plain handler ([Handle]) is for external effects: the relay records the
// entry's processed key with its completion, and an entry whose key is
// already processed is skipped. Hand e.Key to the outside world so a receiver
// can drop the one duplicate a crash can cause (between the effect and the
// completion being written). A transactional handler ([HandleTx]) is for
// database effects: its writes, the processed key and the completion commit
// in one transaction, so the effect happens exactly once.
//
// # Running
//
//	r, err := relay.New(pool, relay.Config{Handlers: h})
//	if err != nil { ... }          // a *ConfigError: what is wrong and where
//	err = r.Run(ctx)               // until ctx is done, then a graceful stop
//
// Run it as a goroutine in the application or as its own process; any number
// of relays may run against one database at once.
//
// # How it works
//
//   - Notifier: one LISTEN connection per relay; the schema's insert trigger
//     wakes the claimer within milliseconds. Config.PollInterval polling
//     covers missed notifications and delayed entries.
//   - Claimer: one short statement per batch claims due entries with
//     FOR UPDATE SKIP LOCKED, sets them running with a lease and the next
//     attempt number, and commits. No transaction is held while a handler
//     runs (except the transactional handler's own).
//   - Executor: a bounded worker pool per queue; payloads are decoded into
//     the handler's type, panics are recovered as errors, and each attempt
//     has a timeout.
//   - Completer: outcomes are written in batches, each fenced by the attempt
//     number, so a relay that lost its lease cannot complete, fail or retry
//     the entry. A transactional handler's completion is written in its own
//     transaction instead. Either way, and for an entry whose lease was lost
//     before it ran or that shutdown handed back, an attempt ends through one
//     exit that releases the lease, reports the outcome and wakes the queue.
//   - Heartbeat: leases are renewed while handlers run; a handler whose
//     lease is lost is cancelled (context.Cause is [ErrLeaseLost]).
//   - Maintenance: expired leases of crashed relays return to pending; done
//     entries, dead entries and processed keys are deleted after their
//     retention, in bounded batches; the entries table is vacuumed when it
//     holds many dead row versions (Config.VacuumThreshold).
//
// # Errors from handlers
//
// Return nil when the effect happened. [Permanent] dead-letters at once;
// [RetryAfter] suggests when to try again; any other error is retried by the
// [RetryPolicy] ([ExponentialRetry] by default, computed with
// github.com/cenkalti/backoff/v4) until the entry's max attempts, then
// dead-lettered. A payload that does not decode ([DecodeError]) is
// dead-lettered at once. Dead entries are listed, replayed and discarded with
// outbox.ListDead, outbox.Replay and outbox.Discard.
//
// # Observing
//
// Config.Observer receives an [Event] for every claim, start, outcome, lease
// loss, rescue and retention run; Config.Logger receives logs (log/slog).
// Config.Tracer wraps every handler attempt, for example in an OpenTelemetry
// span that continues the producer's trace (package txotel). Every outcome
// the relay writes is announced on outbox.ProgressChannel, which outbox.Wait
// and outbox.Watcher listen on. See docs/observability.md.
package relay

// Where each part of the engine lives:
//
//	relay.go       Relay, New, Run: the queues and the wiring of the parts
//	notify.go      Notifier: the LISTEN connection and the wake-ups it sends
//	claimer.go     Claimer: one claim loop per queue
//	executor.go    Executor: workers, handler attempts, transactional commits,
//	               the decision retry/dead/hand back
//	completer.go   Completer: batched outcome writes, and settle, the one
//	               exit every claimed entry leaves through
//	heartbeat.go   Heartbeat: lease renewal and local expiry
//	leases.go      the lease table the parts above share
//	maintenance.go Maintenance: rescue of expired leases, retention, VACUUM,
//	               reports of entries no relay here handles
//
// The public API is in config.go, handler.go, errors.go, retry.go,
// observer.go and tracer.go.
