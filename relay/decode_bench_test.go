package relay

// BenchmarkDecode measures what a handler registered with Handle[T] costs
// the relay per entry before and after the handler function runs:
// decoding the claimed row's payload into T and its headers, building the
// Entry, and calling a no-op function. The public API reaches this code
// only through a running relay, where the database dominates, so the
// benchmark lives inside the package and calls the registered handler
// directly. It needs no database:
//
//	go test -run '^$' -bench Decode -benchmem ./relay/

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

// benchNoop is the payload `txoutbox bench` writes.
type benchNoop struct {
	N int64 `json:"n"`
}

func (benchNoop) Topic() string { return "bench.noop" }

func BenchmarkDecode(b *testing.B) {
	lines := make([]string, 20)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"description":"Widget %d","quantity":%d,"unit_cents":1250}`, i, i+1)
	}
	invoice := `{"number":"INV-2026-0042","lines":[` + strings.Join(lines, ",") +
		`],"paid":false,"meta":{"customer":"cus_42","channel":"web"}}`
	traceHeaders := `{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","correlation_id":"req-7f3a"}`

	for _, bc := range []struct {
		name             string
		register         func(h *Handlers)
		topic            string
		payload, headers string
	}{
		{"noop", func(h *Handlers) {
			Handle(h, func(context.Context, *Entry[benchNoop]) error { return nil })
		}, "bench.noop", `{"n":12345}`, `{}`},
		{"noop_trace_headers", func(h *Handlers) {
			Handle(h, func(context.Context, *Entry[benchNoop]) error { return nil })
		}, "bench.noop", `{"n":12345}`, traceHeaders},
		{"invoice_20_lines", func(h *Handlers) {
			Handle(h, func(context.Context, *Entry[fuzzInvoice]) error { return nil })
		}, "fuzz.invoice", invoice, traceHeaders},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := NewHandlers()
			bc.register(h)
			hd := h.byTopic[bc.topic]
			if hd == nil || h.err() != nil {
				b.Fatalf("handler not registered: %v", h.err())
			}
			c := &store.Claimed{
				ID: 1, Topic: bc.topic, Key: "0b6f2c1e-7d35-4c1a-9a52-5d2f3e8b9c10", Queue: "default",
				Attempt: 1, MaxAttempts: 25, Payload: []byte(bc.payload), Headers: []byte(bc.headers),
				CreatedAt: time.Now(), RunAt: time.Now(),
			}
			ctx := context.Background()
			b.SetBytes(int64(len(c.Payload) + len(c.Headers)))
			b.ReportAllocs()
			for b.Loop() {
				if err := hd.invoke(ctx, &attemptRun{claimed: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
