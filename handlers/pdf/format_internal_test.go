package pdf

import (
	"math"
	"strings"
	"testing"
)

func TestFormatCents(t *testing.T) {
	t.Parallel()
	for c, want := range map[int64]string{
		0: "0.00", 5: "0.05", -5: "-0.05", 100: "1.00", 99999: "999.99", 100000: "1,000.00",
		-123456789: "-1,234,567.89", 100000000: "1,000,000.00",
		math.MaxInt64: "92,233,720,368,547,758.07", math.MinInt64: "-92,233,720,368,547,758.08",
	} {
		if got := formatCents(c); got != want {
			t.Errorf("formatCents(%d) = %q; want %q", c, got, want)
		}
	}
}

// Every name ObjectName makes is one DirStore accepts.
func FuzzObjectNameIsValid(f *testing.F) {
	for _, k := range []string{"", ".", "..", "../../x", "/abs", `a\b`, "invoice:17", "\x00", strings.Repeat("é", 200), ".tmp"} {
		f.Add("pdf.invoice", k)
	}
	f.Add("", "k")
	f.Add("a/b/c", "k")
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if checkPrefix(prefix) != nil {
			return
		}
		name := ObjectName(prefix, key)
		if err := checkName(name); err != nil {
			t.Fatalf("ObjectName(%q, %q) = %q, which DirStore refuses: %v", prefix, key, name, err)
		}
		if name != ObjectName(prefix, key) {
			t.Fatal("not deterministic")
		}
	})
}
