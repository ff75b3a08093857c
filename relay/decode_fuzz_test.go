package relay

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/txoutbox/txoutbox/internal/store"
)

// fuzzInvoice is a payload with nested, typed fields, like a real one.
type fuzzInvoice struct {
	Number string `json:"number"`
	Lines  []struct {
		Description string `json:"description"`
		Quantity    int    `json:"quantity"`
		UnitCents   int64  `json:"unit_cents"`
	} `json:"lines"`
	Paid *bool             `json:"paid"`
	Meta map[string]string `json:"meta"`
}

func (fuzzInvoice) Topic() string { return "fuzz.invoice" }

// FuzzDecodeEntry feeds arbitrary payload and headers columns — rows any
// producer, including plain SQL, can write — to the relay's decoding. It
// must never panic: a payload that does not fit the type is a *DecodeError
// (the entry is dead-lettered), and headers are read leniently.
func FuzzDecodeEntry(f *testing.F) {
	for _, seed := range []struct{ payload, headers string }{
		{`{"number":"INV-1","lines":[{"description":"Widget","quantity":2,"unit_cents":1250}],"paid":true}`, `{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`},
		{`{}`, `{}`},
		{`null`, `null`},
		{`[]`, `[]`},
		{`{"lines": "not a list"}`, `{"n": 1, "b": true, "o": {"x": 1}}`},
		{`{"lines":[{"quantity": 1e400}]}`, `"string"`},
		{`{"number": 12}`, ``},
		{`{"meta": {"k": 1}}`, `{"k": "v", "k": "w"}`},
		{`not json`, `not json`},
		{`{"number":"\u0000"}`, `{"\u00e9": "\ud800"}`},
	} {
		f.Add([]byte(seed.payload), []byte(seed.headers))
	}
	f.Fuzz(func(t *testing.T, payload, headers []byte) {
		c := &store.Claimed{ID: 1, Topic: "fuzz.invoice", Key: "k", Attempt: 1, MaxAttempts: 3, Payload: payload, Headers: headers}
		e, err := decodeEntry[fuzzInvoice](c, "fuzzInvoice")
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Topic != "fuzz.invoice" {
				t.Fatalf("decode error %T %v; want a *DecodeError", err, err)
			}
			if json.Valid(payload) {
				var v fuzzInvoice
				if json.Unmarshal(payload, &v) == nil {
					t.Fatalf("refused a payload encoding/json decodes: %q", payload)
				}
			}
			return
		}
		if e.ID != 1 || e.Key != "k" || e.Attempt != 1 {
			t.Fatalf("entry fields lost: %+v", e)
		}
		for k, v := range e.Headers {
			_, _ = k, v
		}
	})
}
