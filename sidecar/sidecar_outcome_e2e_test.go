package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// "outcome_before_next" in the file reaches the kind's Register: with one
// worker, every handler the relay command runs finds the entry before it
// done.
func TestRelayCommandAppliesOutcomeBeforeNext(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	const n = 20
	for i := range n {
		if _, err := outbox.Enqueue(context.Background(), db.Pool, Record{Note: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var prev int64
	var handled int
	var notDone []string
	all := make(chan struct{})
	kind := sidecar.Kind{Name: "record", Register: func(h *relay.Handlers, _ json.RawMessage, _ func(string) string, opts ...relay.HandlerOption) error {
		relay.Handle(h, func(ctx context.Context, e *relay.Entry[Record]) error {
			mu.Lock()
			before := prev
			prev = e.ID
			mu.Unlock()
			if before != 0 {
				var state string
				if err := db.Pool.QueryRow(ctx, `SELECT state FROM outbox_entries WHERE id = $1`, before).Scan(&state); err != nil {
					return err
				}
				if state != "done" {
					mu.Lock()
					notDone = append(notDone, fmt.Sprintf("%d:%s", before, state))
					mu.Unlock()
				}
			}
			mu.Lock()
			handled++
			if handled == n {
				close(all)
			}
			mu.Unlock()
			return nil
		}, opts...)
		return nil
	}}
	path := writeConfig(t, `{"log": {"level": "error"}, "relay": {"queues": {"default": {"max_workers": 1}}, "poll_interval": "50ms"},
		"handlers": [{"kind": "record", "outcome_before_next": true}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- sidecar.Main(ctx, []string{"relay", "--config", path, "--listen", "off"}, sidecar.Options{
			Stdout: io.Discard, Stderr: io.Discard,
			Getenv: func(k string) string { return map[string]string{"DATABASE_URL": db.URL}[k] },
			Kinds:  []sidecar.Kind{kind},
		})
	}()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		t.Fatal("entries not handled within two minutes")
	}
	cancel()
	if c := <-code; c != sidecar.ExitOK {
		t.Fatalf("exit %d", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notDone) > 0 {
		t.Fatalf("%d handlers started before the previous entry's outcome was committed: %s", len(notDone), strings.Join(notDone, " "))
	}
}
