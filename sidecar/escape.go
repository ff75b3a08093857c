package sidecar

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// escapeControls returns s with every character a terminal could act on
// written as a visible escape, so that text from the database (a topic,
// key or last error written by any producer) cannot clear the screen, set
// the window title, make hyperlinks or overwrite lines when printed:
//
//   - the C0 controls (below U+0020), DEL (U+007F) and the C1 controls
//     (U+0080–U+009F, among them U+009B, a one-character CSI) become \t,
//     \n, \r or \u001b-style escapes, which read the same in a table and
//     in JSON;
//   - a byte that is not UTF-8 becomes \ufffd (on an 8-bit terminal a lone
//     0x9b is CSI too).
//
// With keepLayout, newlines and tabs are kept: for JSON, whose strings
// escape their own, and for messages of several lines (a driver's error
// often has indented lines). Table cells escape them, as they would break
// the table's lines and columns. Everything else, backslashes included,
// is left as it is, so that ordinary text reads unchanged.
// It is the one escaping function of the command line's output: tables,
// JSON (after encoding/json, which leaves DEL and C1 alone) and errors.
func escapeControls(s string, keepLayout bool) string {
	clean := true
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size, keepLayout) {
			clean = false
			break
		}
		i += size
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if !needsEscape(r, size, keepLayout) {
			b.WriteRune(r)
			continue
		}
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// needsEscape reports whether the rune r, decoded from size bytes, is one
// escapeControls replaces.
func needsEscape(r rune, size int, keepLayout bool) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true
	case r == '\n' || r == '\t':
		return !keepLayout
	}
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}
