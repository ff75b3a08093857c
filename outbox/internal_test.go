package outbox

import (
	"encoding/json"
	"strings"
	"testing"
)

// containsNUL reports whether a decoded JSON value holds a NUL in any
// string or object key: the ground truth for hasEscapedNUL.
func containsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, e := range v {
			if containsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) || containsNUL(e) {
				return true
			}
		}
	}
	return false
}

// FuzzHasEscapedNUL checks hasEscapedNUL against decoding: for valid JSON
// it is true exactly when a decoded string or key contains a NUL.
func FuzzHasEscapedNUL(f *testing.F) {
	for _, seed := range []string{
		`{}`, `"\u0000"`, `"\\u0000"`, `"\\\u0000"`, `"\\\\u0000"`, `{"\u0000":1}`,
		`["a","b\u0000c"]`, `"\u00000"`, `"\u0001"`, `"x\\"`, `"\"\u0000"`, `"\\\\"`,
		`"\ud800\udc00"`, `{"a":"\\u00","b":"u0000"}`, `"` + "\x00" + `"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		// Only compacted JSON reaches hasEscapedNUL, as json.Marshal
		// returns it; a raw NUL byte is not valid JSON anyway.
		if got, want := hasEscapedNUL(b), containsNUL(v); got != want {
			t.Fatalf("hasEscapedNUL(%q) = %v, decoded value contains NUL = %v", b, got, want)
		}
	})
}
