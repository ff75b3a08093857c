// Package txotel connects txoutbox to OpenTelemetry tracing, so that one
// trace shows a request, the entry it enqueued, and the handler that ran it
// — even when the handler runs minutes later in another process.
//
// On the producer side, [Headers] stores the W3C trace context of the
// enqueueing context (the request's span) in the entry's headers, in the
// same insert and so the same transaction:
//
//	p := outbox.Producer{Headers: txotel.Headers}
//	_, err := p.Enqueue(ctx, tx, msg) // ctx carries the request's span
//
// or per call, with outbox.WithHeaders(txotel.Headers(ctx)).
//
// On the relay side, a [Tracer] in relay.Config.Tracer starts a span around
// every handler attempt, as a child of the stored context (the default) or
// as the root of a new trace linked to it ([Config.Link]), with the
// attributes listed under [Tracer.StartAttempt]. The handler's context
// carries the span, so the handler's own spans (an HTTP client, a database
// driver) nest under it.
//
// This package uses the OpenTelemetry API only; the application chooses
// and configures the SDK and exporter. Neither package outbox nor package
// relay imports OpenTelemetry: without this package, tracing costs nothing.
package txotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/outbox"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/txoutbox/txoutbox/txotel"

// Attribute keys of the handler span. The messaging.* keys follow
// OpenTelemetry's messaging conventions; the txoutbox.* keys are ours.
const (
	AttrTopic       = attribute.Key("txoutbox.topic")
	AttrQueue       = attribute.Key("txoutbox.queue")
	AttrEntryID     = attribute.Key("txoutbox.entry.id")
	AttrAttempt     = attribute.Key("txoutbox.attempt")
	AttrMaxAttempts = attribute.Key("txoutbox.max_attempts")
	AttrOutcome     = attribute.Key("txoutbox.outcome")

	AttrMessagingSystem      = attribute.Key("messaging.system")
	AttrMessagingOperation   = attribute.Key("messaging.operation.type")
	AttrMessagingDestination = attribute.Key("messaging.destination.name")
	AttrMessagingMessageID   = attribute.Key("messaging.message.id")
)

// Headers returns the W3C trace context of ctx — the traceparent and, when
// set, tracestate headers — or nil when ctx carries no valid span context.
// Its signature fits outbox.Producer.Headers.
func Headers(ctx context.Context) map[string]string {
	return HeadersWith(propagation.TraceContext{})(ctx)
}

// HeadersWith returns a function like Headers that injects with p (for
// example a composite of Trace Context and Baggage). Configure the relay's
// Tracer with the same propagator.
func HeadersWith(p propagation.TextMapPropagator) func(ctx context.Context) map[string]string {
	return func(ctx context.Context) map[string]string {
		c := propagation.MapCarrier{}
		p.Inject(ctx, c)
		if len(c) == 0 {
			return nil
		}
		return c
	}
}

// Config configures a Tracer. The zero value is ready to use.
type Config struct {
	// TracerProvider starts the spans. Default otel.GetTracerProvider() at
	// NewTracer time.
	TracerProvider trace.TracerProvider

	// Propagator reads the trace context from the entry's headers. Default
	// W3C Trace Context (propagation.TraceContext), matching Headers.
	Propagator propagation.TextMapPropagator

	// Link starts each handler span as the root of a new trace with a link
	// to the producer's span, instead of as its child. Links suit entries
	// that run long after the request, or fan out widely; children give one
	// trace from request to effect. Default false: child.
	Link bool
}

// ErrInvalidConfig is matched by every error NewTracer returns for an
// invalid Config; errors.As yields the *ConfigError naming the field.
var ErrInvalidConfig = errors.New("txotel: invalid configuration")

// ConfigError describes one invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("txotel: invalid config %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Tracer starts a span around every handler attempt; set it as
// relay.Config.Tracer. It is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	link   bool
}

// NewTracer returns a Tracer for cfg. Its errors match ErrInvalidConfig
// and are *ConfigError.
func NewTracer(cfg Config) (*Tracer, error) {
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	t := tp.Tracer(ScopeName)
	if t == nil {
		return nil, &ConfigError{Field: "TracerProvider", Reason: "returned a nil Tracer"}
	}
	return &Tracer{tracer: t, prop: prop, link: cfg.Link}, nil
}

// StartAttempt starts the span of one handler attempt; the relay calls it
// (relay.Tracer). The span is named "process <topic>", of kind consumer,
// with attributes txoutbox.topic, txoutbox.queue, txoutbox.entry.id,
// txoutbox.attempt, txoutbox.max_attempts, messaging.system "txoutbox",
// messaging.operation.type "process", messaging.destination.name (the
// topic) and messaging.message.id (the entry id). When the attempt ends,
// txoutbox.outcome is set to the relay's outcome ("done", "skipped",
// "retry", "dead", "handed_back", "fenced"); a handler error is recorded
// on the span, whose status is Error unless the outcome is done or skipped.
func (t *Tracer) StartAttempt(ctx context.Context, e *outbox.Entry) (context.Context, func(outcome string, err error)) {
	carrier := propagation.MapCarrier(e.Headers)
	if carrier == nil {
		carrier = propagation.MapCarrier{}
	}
	ctx = t.prop.Extract(ctx, carrier)
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			AttrTopic.String(e.Topic),
			AttrQueue.String(e.Queue),
			AttrEntryID.Int64(e.ID),
			AttrAttempt.Int(e.Attempt),
			AttrMaxAttempts.Int(e.MaxAttempts),
			AttrMessagingSystem.String("txoutbox"),
			AttrMessagingOperation.String("process"),
			AttrMessagingDestination.String(e.Topic),
			AttrMessagingMessageID.String(fmt.Sprint(e.ID)),
		),
	}
	if t.link {
		if remote := trace.SpanContextFromContext(ctx); remote.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote}))
		}
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := t.tracer.Start(ctx, "process "+e.Topic, opts...)
	return ctx, func(outcome string, err error) {
		span.SetAttributes(AttrOutcome.String(outcome))
		if err != nil {
			span.RecordError(err)
		}
		switch outcome {
		case "done", "skipped":
		default:
			msg := outcome
			if err != nil {
				msg = outcome + ": " + err.Error()
			}
			span.SetStatus(codes.Error, msg)
		}
		span.End()
	}
}
