package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// schema is the application's tables: accounts and their ledger.
const schema = `
CREATE TABLE accounts (
	id            text PRIMARY KEY,
	balance_cents bigint NOT NULL DEFAULT 0
);
CREATE TABLE ledger (
	event_id text NOT NULL, -- deliberately not UNIQUE: see the package comment
	account  text NOT NULL REFERENCES accounts,
	cents    bigint NOT NULL
);
INSERT INTO accounts (id) VALUES ('ada');`

// PaymentSucceeded is the provider's event, as the application received
// it.
type PaymentSucceeded struct {
	EventID string `json:"event_id"` // the provider's id, the same on every delivery
	Account string `json:"account"`
	Cents   int64  `json:"cents"`
}

// Topic names the handler.
func (PaymentSucceeded) Topic() string { return "payments.succeeded" }

// receive records a delivery of evt from the provider. The key is the
// provider's event id, the business identity of the effect. Nothing else
// is written here, so the pool commits the entry on its own; an
// application that also stores the raw event would pass its transaction.
func receive(ctx context.Context, pool *pgxpool.Pool, evt PaymentSucceeded) (outbox.Enqueued, error) {
	return outbox.Enqueue(ctx, pool, evt, outbox.WithKey("payment:"+evt.EventID))
}

// run tells the story on pool, a migrated database.
func run(ctx context.Context, out io.Writer, pool *pgxpool.Pool) error {
	p := &printer{out: out}
	if _, err := pool.Exec(ctx, schema); err != nil {
		return err
	}

	// The fraud check of the first attempt at evt_2 times out, after the
	// handler wrote its rows.
	var fraudChecks sync.Map
	fraudCheck := func(evt PaymentSucceeded) error {
		if _, seen := fraudChecks.LoadOrStore(evt.EventID, true); !seen && evt.EventID == "evt_2" {
			return errors.New("fraud check timed out")
		}
		return nil
	}

	var handlerRuns atomic.Int64
	h := relay.NewHandlers()
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[PaymentSucceeded]) error {
		handlerRuns.Add(1)
		evt := e.Payload
		if _, err := tx.Exec(ctx, `INSERT INTO ledger (event_id, account, cents) VALUES ($1, $2, $3)`, evt.EventID, evt.Account, evt.Cents); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance_cents = balance_cents + $2 WHERE id = $1`, evt.Account, evt.Cents); err != nil {
			return err
		}
		p.printf("handler:  %s attempt %d: wrote a ledger row and credited %s %s", evt.EventID, e.Attempt, evt.Account, eur(evt.Cents))
		// Returning an error rolls back the transaction: the ledger row and
		// the balance update with it.
		return fraudCheck(evt)
	}, relay.WithRetryPolicy(relay.ExponentialRetry{Initial: 100 * time.Millisecond}))

	events := make(chan relay.Event, 100)
	r, err := relay.New(pool, relay.Config{
		Handlers: h,
		// Done entries are deleted 1ms after they finish, by the
		// r.Retention call below (the defaults: 24h, every minute); the
		// processed keys stay for the default 30 days.
		DoneRetention:     time.Millisecond,
		RetentionInterval: -1,
		Logger:            slog.New(slog.DiscardHandler),
		Observer: relay.ObserverFunc(func(ev relay.Event) {
			switch ev.Kind {
			case relay.EventDone, relay.EventRetry, relay.EventSkipped, relay.EventDead:
				events <- ev
			}
		}),
	})
	if err != nil {
		return err
	}

	// 1. Two deliveries of evt_1 and one of evt_2, before any relay runs.
	evt1 := PaymentSucceeded{EventID: "evt_1", Account: "ada", Cents: 5000}
	evt2 := PaymentSucceeded{EventID: "evt_2", Account: "ada", Cents: 3000}
	for _, evt := range []PaymentSucceeded{evt1, evt1, evt2} {
		res, err := receive(ctx, pool, evt)
		if err != nil {
			return err
		}
		if res.Duplicate {
			p.printf("provider: %s delivered again -> a duplicate of entry #%d: nothing new queued", evt.EventID, res.ID)
		} else {
			p.printf("provider: %s delivered (%s for %s) -> entry #%d queued", evt.EventID, eur(evt.Cents), evt.Account, res.ID)
		}
	}

	// 2. The relay runs them: evt_1 once, evt_2 twice (the first attempt
	// rolls back).
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()
	defer func() {
		stopRelay()
		<-relayDone
	}()
	p.printf("relay:    started")
	for done := 0; done < 2; {
		ev, err := next(ctx, events)
		if err != nil {
			return err
		}
		switch ev.Kind {
		case relay.EventRetry:
			p.printf("relay:    entry #%d attempt %d failed (%v): its transaction rolled back, ledger row and credit included; retry in %s",
				ev.EntryID, ev.Attempt, ev.Err, ev.RetryIn.Round(time.Millisecond))
		case relay.EventDone:
			p.printf("relay:    entry #%d done on attempt %d; its writes, processed key and completion committed together", ev.EntryID, ev.Attempt)
			done++
		default:
			return fmt.Errorf("unexpected %v for entry #%d: %v", ev.Kind, ev.EntryID, ev.Err)
		}
	}

	// 3. Retention deletes the done entries; their processed keys stay.
	time.Sleep(10 * time.Millisecond) // past DoneRetention
	deleted, err := r.Retention(ctx)
	if err != nil {
		return err
	}
	p.printf("relay:    retention deleted %d done entries; their processed keys stay (ProcessedKeyRetention, 30 days)", deleted)

	// 4. The provider delivers evt_1 once more, days later.
	res, err := receive(ctx, pool, evt1)
	if err != nil {
		return err
	}
	p.printf("provider: %s delivered again, days later -> entry #%d queued (the first entry is gone, so the key is free)", evt1.EventID, res.ID)
	ev, err := next(ctx, events)
	if err != nil {
		return err
	}
	if ev.Kind != relay.EventSkipped {
		return fmt.Errorf("entry #%d: %v, want skipped", ev.EntryID, ev.Kind)
	}
	p.printf("relay:    entry #%d skipped: key payment:%s is processed, so the handler did not run", ev.EntryID, evt1.EventID)

	var rows int
	var balance int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger), (SELECT balance_cents FROM accounts WHERE id = 'ada')`).Scan(&rows, &balance); err != nil {
		return err
	}
	p.printf("result:   4 deliveries, %d handler runs, %d ledger rows; ada's balance is %s (%s + %s)",
		handlerRuns.Load(), rows, eur(balance), eur(evt1.Cents), eur(evt2.Cents))
	if rows != 2 || balance != evt1.Cents+evt2.Cents {
		return errors.New("the effect did not happen exactly once")
	}
	return nil
}

// next waits for the relay's next outcome.
func next(ctx context.Context, events <-chan relay.Event) (relay.Event, error) {
	select {
	case ev := <-events:
		return ev, nil
	case <-time.After(time.Minute):
		return relay.Event{}, errors.New("no outcome from the relay within a minute")
	case <-ctx.Done():
		return relay.Event{}, ctx.Err()
	}
}

func eur(cents int64) string { return fmt.Sprintf("%d.%02d EUR", cents/100, cents%100) }

// printer prints lines from many goroutines.
type printer struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format+"\n", args...)
}
