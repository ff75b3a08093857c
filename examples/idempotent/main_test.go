package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// Four deliveries of two payments credit the account twice: run fails
// otherwise (it checks the ledger and the balance); the output tells how.
func TestIdempotent(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, db.Pool); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"evt_1 delivered again -> a duplicate of entry #1: nothing new queued",
		"attempt 1 failed (fraud check timed out): its transaction rolled back",
		"handler:  evt_2 attempt 2: wrote a ledger row",
		"retention deleted 2 done entries",
		"skipped: key payment:evt_1 is processed, so the handler did not run",
		"result:   4 deliveries, 3 handler runs, 2 ledger rows; ada's balance is 80.00 EUR (50.00 EUR + 30.00 EUR)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
