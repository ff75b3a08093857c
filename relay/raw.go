package relay

import (
	"context"
	"encoding/json"
)

// RawHandlerFunc handles entries of one topic with their payload as stored:
// the JSON text the relay read, not decoded. It returns what a
// [HandlerFunc] returns.
type RawHandlerFunc func(ctx context.Context, e *Entry[json.RawMessage]) error

// HandleRaw registers fn for topic, named by a string rather than by a
// payload type, with the payload left undecoded. It is for handlers that
// pass payloads through without reading them — a broker publisher serving
// the topics a configuration file lists — and otherwise behaves as
// [Handle]: processed keys, options, retries and outcomes are the same. A
// topic registered with both HandleRaw and Handle is registered twice, an
// error New reports.
func HandleRaw(h *Handlers, topic string, fn RawHandlerFunc, opts ...HandlerOption) {
	const typ = "json.RawMessage"
	switch {
	case topic == "":
		h.errs = append(h.errs, configErr("handler", "HandleRaw with an empty topic"))
		return
	case fn == nil:
		h.errs = append(h.errs, configErr("handler", "nil handler function for topic %q", topic))
		return
	}
	h.add(topic, typ, false, opts, func(ctx context.Context, run *attemptRun) error {
		e := newEntry[json.RawMessage](run.claimed)
		e.Payload = append(json.RawMessage(nil), run.claimed.Payload...)
		if err := fn(ctx, e); err != nil {
			return err
		}
		return run.setResult(e.hasRes, e.result)
	})
}
