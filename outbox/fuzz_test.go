package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzRawPayload feeds arbitrary bytes as a Raw payload — what the CLI's
// `txoutbox enqueue <topic> <json>` and other non-Go producers pass — and
// arbitrary option strings through the producer's validation. It must never
// panic, and whatever it accepts must be something PostgreSQL's jsonb and
// the schema's CHECK constraints accept: valid JSON in UTF-8 without NUL,
// names within their limits.
func FuzzRawPayload(f *testing.F) {
	for _, seed := range []struct {
		topic, key, queue string
		payload           []byte
	}{
		{"email.welcome", "welcome:42", "", []byte(`{"user_id": 42}`)},
		{"t", "", "bulk", []byte(`[1, 2, 3]`)},
		{"t", "k", "q", []byte(`"just a string"`)},
		{"t", "k", "q", []byte(``)},
		{"t", "k", "q", []byte(`{"a": "\u0000"}`)},
		{"t", "k", "q", []byte(`{"a": "\\u0000"}`)},
		{"t", "k", "q", []byte("{\"a\": \"\xff\"}")},
		{"", "k", "q", []byte(`{}`)},
		{"t", "k\x00", "q", []byte(`{}`)},
		{"t", "k", "q", []byte(`{"a": 1} trailing`)},
	} {
		f.Add(seed.topic, seed.key, seed.queue, seed.payload)
	}
	f.Fuzz(func(t *testing.T, topic, key, queue string, payload []byte) {
		p := Producer{MaxPayloadBytes: 4096}
		r, err := p.prepare(Raw{TopicName: topic, Payload: payload}, nil, []Option{WithKey(key), WithQueue(queue)})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if !json.Valid(r.payload) || !utf8.Valid(r.payload) || hasEscapedNUL(r.payload) {
			t.Fatalf("accepted a payload jsonb refuses: %q", r.payload)
		}
		if len(r.payload) > 4096 {
			t.Fatalf("accepted %d bytes over the limit", len(r.payload))
		}
		if r.topic == "" || len(r.topic) > MaxTopicLen || !utf8.ValidString(r.topic) || bytes.IndexByte([]byte(r.topic), 0) >= 0 {
			t.Fatalf("accepted topic %q", r.topic)
		}
		if len(r.key) > MaxKeyLen || !utf8.ValidString(r.key) || bytes.IndexByte([]byte(r.key), 0) >= 0 {
			t.Fatalf("accepted key %q", r.key)
		}
		if r.queue == "" || len(r.queue) > MaxQueueLen {
			t.Fatalf("accepted queue %q", r.queue)
		}
	})
}
