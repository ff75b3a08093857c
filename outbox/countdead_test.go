package outbox_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
)

// TestCountDead counts what Replay would replay, for every form of
// selection, through pgx and database/sql, and changes nothing.
func TestCountDead(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	ctx := t.Context()
	all := append(f.allDead(), f.others()...)
	before := snapshot(t, f.db, all)
	cases := []struct {
		name string
		sel  outbox.Selection
		want int64
	}{
		{"ids", outbox.Selection{IDs: append([]int64{f.signups[0], f.audits[1], 987654321}, f.others()...)}, 2},
		{"topic", outbox.Selection{Topic: "user.signup"}, int64(len(f.signups))},
		{"ids and topic", outbox.Selection{IDs: []int64{f.audits[0]}, Topic: "user.signup"}, int64(len(f.signups)) + 1},
		{"unknown topic", outbox.Selection{Topic: "no.such"}, 0},
		{"all", outbox.Selection{All: true}, int64(len(f.allDead()))},
	}
	for _, c := range cases {
		for name, q := range map[string]outbox.Querier{"pgx": f.db.Pool, "sql": outbox.SQL(f.db.SQL)} {
			n, err := outbox.CountDead(ctx, q, c.sel)
			if err != nil || n != c.want {
				t.Errorf("%s via %s: CountDead = %d, %v; want %d", c.name, name, n, err, c.want)
			}
		}
	}
	if after := snapshot(t, f.db, all); !reflect.DeepEqual(before, after) {
		t.Errorf("CountDead changed entries")
	}

	// The count is what Replay then replays, in the same transaction.
	for _, c := range cases {
		tx, err := f.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counted, err := outbox.CountDead(ctx, tx, c.sel)
		if err != nil {
			t.Fatal(err)
		}
		replayed, err := outbox.Replay(ctx, tx, c.sel)
		if err != nil {
			t.Fatal(err)
		}
		if counted != replayed {
			t.Errorf("%s: counted %d, replayed %d", c.name, counted, replayed)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCountDeadInvalid: CountDead refuses the selections Replay and
// Discard refuse, with the same error, and a nil querier.
func TestCountDeadInvalid(t *testing.T) {
	t.Parallel()
	f := newDeadFixture(t)
	for _, sel := range []outbox.Selection{
		{},
		{IDs: []int64{}},
		{All: true, IDs: []int64{f.signups[0]}},
		{All: true, Topic: "user.signup"},
	} {
		n, err := outbox.CountDead(t.Context(), f.db.Pool, sel)
		if n != 0 {
			t.Errorf("CountDead(%+v) = %d", sel, n)
		}
		requireInvalid(t, err, "selection")
		_, replayErr := outbox.Replay(t.Context(), f.db.Pool, sel)
		if replayErr == nil || err.Error() != replayErr.Error() {
			t.Errorf("CountDead(%+v): %v; Replay: %v", sel, err, replayErr)
		}
	}
	if _, err := outbox.CountDead(t.Context(), nil, outbox.Selection{All: true}); !errors.Is(err, outbox.ErrNilQuerier) {
		t.Errorf("nil querier: %v, want ErrNilQuerier", err)
	}
}
