package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// A handler with "outcome_before_next" makes each worker wait for its
// outcome's commit: with one worker, every handler run finds the entry
// before it done. The setting reaches the handler through a Kind's
// options, as in a team's own binary.
func TestHandlerOptionsWaitForOutcome(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	const n = 20
	var mu sync.Mutex
	var prev int64
	var notDone []string
	record := sidecar.Kind{Name: "record", Register: func(h *relay.Handlers, _ json.RawMessage, _ func(string) string, opts ...relay.HandlerOption) error {
		relay.Handle(h, func(ctx context.Context, e *relay.Entry[Record]) error {
			mu.Lock()
			before := prev
			prev = e.ID
			mu.Unlock()
			if before == 0 {
				return nil
			}
			var state string
			if err := db.Pool.QueryRow(ctx, `SELECT state FROM outbox_entries WHERE id = $1`, before).Scan(&state); err != nil {
				return err
			}
			if state != "done" {
				mu.Lock()
				notDone = append(notDone, fmt.Sprintf("%d:%s", before, state))
				mu.Unlock()
			}
			return nil
		}, opts...)
		return nil
	}}
	for i := range n {
		if _, err := outbox.Enqueue(context.Background(), db.Pool, Record{Note: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, `{"log": {"format": "text", "level": "warn"},
		"relay": {"poll_interval": "50ms", "retention_interval": "-1s", "queues": {"default": {"max_workers": 1}}},
		"handlers": [{"kind": "record", "outcome_before_next": true}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	var errOut syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- sidecar.Main(ctx, []string{"relay", "--config", cfg, "--listen", "off"}, sidecar.Options{
			Stdout: io.Discard, Stderr: &errOut,
			Getenv: func(k string) string { return map[string]string{"DATABASE_URL": db.URL}[k] },
			Kinds:  []sidecar.Kind{record},
		})
	}()
	poll(t, "every entry done", func() bool {
		return count(t, db.Pool, `SELECT count(*) FROM outbox_entries WHERE state = 'done'`) == n
	})
	cancel()
	if code := <-exited; code != sidecar.ExitOK {
		t.Fatalf("relay exit %d; stderr:\n%s", code, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notDone) > 0 {
		t.Fatalf("%d handlers started before the previous entry's outcome was committed: %s", len(notDone), strings.Join(notDone, " "))
	}
}
