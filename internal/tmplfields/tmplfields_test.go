package tmplfields_test

import (
	"slices"
	"testing"
	"text/template"

	"github.com/txoutbox/txoutbox/internal/tmplfields"
)

func TestUsed(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"plain", nil},
		{"{{.Topic}}.{{.Key}}.{{.Topic}}", []string{"Topic", "Key"}},
		{"{{.Payload.region}}", []string{"Payload"}},
		{"{{if .OrderingKey}}{{.OrderingKey}}{{else}}{{.Key}}{{end}}", []string{"OrderingKey", "Key"}},
		{"{{with .Payload}}{{.inner}}{{$.Queue}}{{end}}", []string{"Payload", "Queue"}},
		{"{{range .Headers}}{{.}}{{end}}{{printf \"%s\" .Topik}}", []string{"Headers", "Topik"}},
		{"{{(.Payload).id}}", []string{"Payload"}},
	} {
		tmpl, err := template.New("t").Parse(tc.text)
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if got := tmplfields.Used(tmpl.Tree.Root); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}
