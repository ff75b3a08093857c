package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// The pdf kind hands every setting to pdf, whose configuration errors come
// back under the file's field names (and make the relay command exit 2);
// nothing is registered then.
func TestPDFKindPropagatesConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		config, field string
	}{
		{`{"dir": "` + dir + `", "max_bytes": -1}`, "max_bytes"},
		{`{"dir": "` + dir + `", "prefix": "../up"}`, "prefix"},
	} {
		h := relay.NewHandlers()
		err := registerPDF(h, json.RawMessage(tc.config), nil)
		ce, ok := errors.AsType[*sidecar.ConfigError](err)
		if !errors.Is(err, sidecar.ErrInvalidConfig) || !ok || ce.Field != tc.field {
			t.Errorf("%s: %v; want a *sidecar.ConfigError for %s", tc.config, err, tc.field)
		}
		if got := h.Topics(); len(got) != 0 {
			t.Errorf("%s: registered %q despite the error", tc.config, got)
		}
	}
	h := relay.NewHandlers()
	if err := registerPDF(h, json.RawMessage(`{"dir": "`+dir+`", "max_bytes": 1048576}`), nil, relay.WithTimeout(time.Minute)); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	if got := strings.Join(h.Topics(), ","); got != "pdf.invoice" {
		t.Fatalf("topics %q; want pdf.invoice", got)
	}
}
