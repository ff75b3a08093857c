package txotel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/txotel"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// The Tracer satisfies relay.Tracer without this package importing relay.
var _ relay.Tracer = (*txotel.Tracer)(nil)

type welcome struct {
	Email string `json:"email"`
}

func (welcome) Topic() string { return "email.welcome" }

type ledger struct {
	Amount int `json:"amount"`
}

func (ledger) Topic() string { return "ledger.post" }

// traced is a database, an in-memory span exporter, and a relay whose
// handlers start spans of their own; the welcome handler fails its first
// attempt when failFirst is set.
type traced struct {
	db        *outboxtest.DB
	spans     *tracetest.InMemoryExporter
	tp        *sdktrace.TracerProvider
	rec       *handlertest.Recorder
	failFirst atomic.Bool
}

func newTraced(t *testing.T, cfg txotel.Config) *traced {
	t.Helper()
	x := &traced{db: outboxtest.New(t), spans: tracetest.NewInMemoryExporter()}
	x.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(x.spans))
	t.Cleanup(func() { _ = x.tp.Shutdown(context.Background()) })
	cfg.TracerProvider = x.tp
	tracer, err := txotel.NewTracer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[welcome]) error {
		_, span := x.tp.Tracer("smtp").Start(ctx, "smtp send")
		defer span.End()
		if e.Attempt == 1 && x.failFirst.Load() {
			return errors.New("smtp: 451 try again later")
		}
		return nil
	})
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[ledger]) error {
		_, span := x.tp.Tracer("db").Start(ctx, "insert ledger row")
		defer span.End()
		_, err := tx.Exec(ctx, `SELECT $1::int`, e.Payload.Amount)
		return err
	})
	x.rec = handlertest.StartRelay(t, x.db.Pool, h, func(c *relay.Config) { c.Tracer = tracer })
	return x
}

// request enqueues msg inside a request span, as a web handler would, and
// returns the entry's id and the request span's context.
func (x *traced) request(t *testing.T, msg outbox.Message) (int64, trace.SpanContext) {
	t.Helper()
	ctx, span := x.tp.Tracer("web").Start(t.Context(), "POST /signup", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	tx, err := x.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	p := outbox.Producer{Headers: txotel.Headers}
	res, err := p.Enqueue(ctx, tx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return res.ID, span.SpanContext()
}

func (x *traced) span(t *testing.T, name string, attempt int) tracetest.SpanStub {
	t.Helper()
	for _, s := range x.spans.GetSpans() {
		if s.Name != name {
			continue
		}
		if attempt == 0 || attr(s, txotel.AttrAttempt) == attribute.IntValue(attempt) {
			return s
		}
	}
	t.Fatalf("no span %q (attempt %d) among %d spans", name, attempt, len(x.spans.GetSpans()))
	return tracetest.SpanStub{}
}

func attr(s tracetest.SpanStub, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestHandlerSpanContinuesTheRequestTrace: the handler span shares the
// trace id of the request span that enqueued the entry, as its child, and
// the handler's own spans nest under it.
func TestHandlerSpanContinuesTheRequestTrace(t *testing.T) {
	t.Parallel()
	x := newTraced(t, txotel.Config{})
	id, req := x.request(t, welcome{Email: "ada@example.com"})

	e, err := outbox.Get(t.Context(), x.db.Pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Headers["traceparent"] == "" {
		t.Fatalf("entry headers %v: no traceparent stored", e.Headers)
	}
	x.rec.Wait(t, id, relay.EventDone)

	proc := x.span(t, "process email.welcome", 1)
	if proc.SpanContext.TraceID() != req.TraceID() {
		t.Fatalf("handler span trace %s, request trace %s: not one trace", proc.SpanContext.TraceID(), req.TraceID())
	}
	if proc.Parent.SpanID() != req.SpanID() || !proc.Parent.IsRemote() {
		t.Errorf("handler span parent %s, want the request span %s (remote)", proc.Parent.SpanID(), req.SpanID())
	}
	if proc.SpanKind != trace.SpanKindConsumer {
		t.Errorf("span kind %s, want consumer", proc.SpanKind)
	}
	for k, want := range map[attribute.Key]attribute.Value{
		txotel.AttrTopic:                attribute.StringValue("email.welcome"),
		txotel.AttrQueue:                attribute.StringValue("default"),
		txotel.AttrEntryID:              attribute.Int64Value(id),
		txotel.AttrAttempt:              attribute.IntValue(1),
		txotel.AttrOutcome:              attribute.StringValue("done"),
		txotel.AttrMessagingSystem:      attribute.StringValue("txoutbox"),
		txotel.AttrMessagingDestination: attribute.StringValue("email.welcome"),
	} {
		if got := attr(proc, k); got != want {
			t.Errorf("attribute %s = %v, want %v", k, got.String(), want.String())
		}
	}
	if proc.Status.Code == codes.Error {
		t.Errorf("status %v for a done attempt", proc.Status)
	}
	inner := x.span(t, "smtp send", 0)
	if inner.Parent.SpanID() != proc.SpanContext.SpanID() || inner.SpanContext.TraceID() != req.TraceID() {
		t.Errorf("the handler's own span is not a child of the handler span")
	}
}

// TestRetriedAttemptsAreSpansOfTheirOwn: a failed attempt ends its span
// with outcome retry and an error status; the next attempt has a span of
// its own in the same trace.
func TestRetriedAttemptsAreSpansOfTheirOwn(t *testing.T) {
	t.Parallel()
	x := newTraced(t, txotel.Config{})
	x.failFirst.Store(true)
	id, req := x.request(t, welcome{Email: "bob@example.com"})
	x.rec.Wait(t, id, relay.EventDone)

	first := x.span(t, "process email.welcome", 1)
	second := x.span(t, "process email.welcome", 2)
	if got := attr(first, txotel.AttrOutcome).AsString(); got != "retry" {
		t.Errorf("first attempt outcome %q, want retry", got)
	}
	if first.Status.Code != codes.Error || len(first.Events) == 0 {
		t.Errorf("first attempt: status %v, %d events; want an error and the recorded exception", first.Status, len(first.Events))
	}
	if got := attr(second, txotel.AttrOutcome).AsString(); got != "done" {
		t.Errorf("second attempt outcome %q, want done", got)
	}
	for _, s := range []tracetest.SpanStub{first, second} {
		if s.SpanContext.TraceID() != req.TraceID() {
			t.Errorf("attempt span in trace %s, want %s", s.SpanContext.TraceID(), req.TraceID())
		}
	}
}

func TestTransactionalHandlerSpan(t *testing.T) {
	t.Parallel()
	x := newTraced(t, txotel.Config{})
	id, req := x.request(t, ledger{Amount: 12})
	x.rec.Wait(t, id, relay.EventDone)
	proc := x.span(t, "process ledger.post", 1)
	if proc.SpanContext.TraceID() != req.TraceID() || attr(proc, txotel.AttrOutcome).AsString() != "done" {
		t.Errorf("tx handler span: trace %s (want %s), outcome %v", proc.SpanContext.TraceID(), req.TraceID(), attr(proc, txotel.AttrOutcome).String())
	}
	if inner := x.span(t, "insert ledger row", 0); inner.Parent.SpanID() != proc.SpanContext.SpanID() {
		t.Errorf("the handler's own span is not a child of the handler span")
	}
}

// TestLinkStartsANewTrace: with Link, the handler span roots a trace of its
// own and links to the request span.
func TestLinkStartsANewTrace(t *testing.T) {
	t.Parallel()
	x := newTraced(t, txotel.Config{Link: true})
	id, req := x.request(t, welcome{Email: "eve@example.com"})
	x.rec.Wait(t, id, relay.EventDone)
	proc := x.span(t, "process email.welcome", 1)
	if proc.SpanContext.TraceID() == req.TraceID() || proc.Parent.IsValid() {
		t.Errorf("linked span in trace %s with parent %v; want a new root", proc.SpanContext.TraceID(), proc.Parent)
	}
	if len(proc.Links) != 1 || proc.Links[0].SpanContext.SpanID() != req.SpanID() || proc.Links[0].SpanContext.TraceID() != req.TraceID() {
		t.Errorf("links %v, want one to the request span", proc.Links)
	}
}

// TestEntriesWithoutTraceContext: no span in the context, no headers; the
// handler span then starts a trace of its own.
func TestEntriesWithoutTraceContext(t *testing.T) {
	t.Parallel()
	if h := txotel.Headers(context.Background()); h != nil {
		t.Errorf("Headers without a span = %v, want nil", h)
	}
	x := newTraced(t, txotel.Config{})
	p := outbox.Producer{Headers: txotel.Headers}
	res, err := p.Enqueue(t.Context(), x.db.Pool, welcome{Email: "plain@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := outbox.Get(t.Context(), x.db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Headers) != 0 {
		t.Errorf("headers %v, want none", e.Headers)
	}
	x.rec.Wait(t, res.ID, relay.EventDone)
	if proc := x.span(t, "process email.welcome", 1); proc.Parent.IsValid() {
		t.Errorf("span parent %v, want a root span", proc.Parent)
	}
}

// nilTracerProvider is a broken TracerProvider: its Tracer is nil.
type nilTracerProvider struct{ noop.TracerProvider }

func (nilTracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return nil }

func TestNewTracerValidates(t *testing.T) {
	t.Parallel()
	_, err := txotel.NewTracer(txotel.Config{TracerProvider: nilTracerProvider{}})
	var ce *txotel.ConfigError
	if !errors.Is(err, txotel.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "TracerProvider" {
		t.Fatalf("NewTracer with a nil Tracer: %v, want ErrInvalidConfig naming TracerProvider", err)
	}
	if want := "txotel: invalid config TracerProvider: returned a nil Tracer"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if _, err := txotel.NewTracer(txotel.Config{}); err != nil {
		t.Errorf("the zero Config: %v", err)
	}
}
