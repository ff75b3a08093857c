package outbox_test

import (
	"context"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestStats(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	ctx := context.Background()
	if s, err := outbox.Stats(ctx, db.Pool); err != nil || len(s) != 0 {
		t.Fatalf("empty outbox: %v, %v", s, err)
	}
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO outbox_entries (topic, queue, state, run_at, attempt, finished_at) VALUES
			('a', 'default', 'pending', now() - interval '90 seconds', 0, NULL),
			('a', 'default', 'pending', now() - interval '10 seconds', 2, NULL),
			('a', 'default', 'pending', now() + interval '1 hour', 0, NULL),
			('a', 'default', 'running', now(), 1, NULL),
			('a', 'default', 'dead', now(), 3, now()),
			('a', 'default', 'dead', now(), 3, now() - interval '2 hours'),
			('a', 'default', 'done', now(), 1, now()),
			('a', 'default', 'done', now(), 1, now() - interval '2 hours'),
			('b', 'bulk', 'running', now(), 1, NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := outbox.Stats(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 {
		t.Fatalf("stats %+v", s)
	}
	a := s[0]
	if a.Topic != "a" || a.Pending != 3 || a.Due != 2 || a.Retrying != 1 || a.Running != 1 ||
		a.Dead != 2 || a.DoneLastHour != 1 || a.DeadLastHour != 1 {
		t.Fatalf("topic a: %+v", a)
	}
	if a.OldestDue.Seconds() < 90 || a.OldestDue.Seconds() > 3600 {
		t.Fatalf("oldest due %s, want about 90s", a.OldestDue)
	}
	if b := s[1]; b.Topic != "b" || b.Queue != "bulk" || b.Running != 1 || b.Pending != 0 || b.OldestDue != 0 {
		t.Fatalf("topic b: %+v", b)
	}
}
