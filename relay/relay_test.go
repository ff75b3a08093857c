package relay_test

import (
	"context"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

func TestDeliversCommittedEntries(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ev := newEvents()
	got := make(chan int, 10)
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[ping]) error {
		got <- e.Payload.N
		return nil
	})
	startRelay(t, db.Pool, fastConfig(h, ev))
	id := enqueue(t, db.Pool, ping{N: 7}, outbox.WithKey("chosen"))
	ev.wait(t, entryKind(id, relay.EventDone))
	if n := <-got; n != 7 {
		t.Fatalf("payload %d, want 7", n)
	}
	e := getEntry(t, db.Pool, id)
	if e.State != outbox.StateDone || e.Attempt != 1 || e.FinishedAt == nil {
		t.Fatalf("entry after success: %+v", e)
	}
	if !scalar[bool](t, db.Pool, `SELECT EXISTS (SELECT 1 FROM outbox_processed_keys WHERE scope = $1 AND key = $2 AND entry_id = $3)`, e.Topic, e.Key, id) {
		t.Fatal("processed key not recorded with the completion")
	}

	// A generated key cannot repeat: the relay records nothing for it.
	gen := enqueue(t, db.Pool, ping{N: 8})
	ev.wait(t, entryKind(gen, relay.EventDone))
	if n := <-got; n != 8 {
		t.Fatalf("payload %d, want 8", n)
	}
	if n := scalar[int64](t, db.Pool, `SELECT count(*) FROM outbox_processed_keys WHERE entry_id = $1`, gen); n != 0 {
		t.Fatalf("%d processed keys recorded for a generated key, want 0", n)
	}
}
