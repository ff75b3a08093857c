package pdf_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	pdfread "github.com/ledongthuc/pdf"

	"github.com/txoutbox/txoutbox/handlers/pdf"
)

func TestInvoiceValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field  string
		change func(*pdf.Invoice)
	}{
		{"number", func(i *pdf.Invoice) { i.Number = "" }},
		{"number", func(i *pdf.Invoice) { i.Number = "  " }},
		{"number", func(i *pdf.Invoice) { i.Number = "A\nB" }},
		{"number", func(i *pdf.Invoice) { i.Number = strings.Repeat("9", pdf.MaxInvoiceNumberLen+1) }},
		{"customer", func(i *pdf.Invoice) { i.Customer = "" }},
		{"customer", func(i *pdf.Invoice) { i.Customer = "bad \xff" }},
		{"seller", func(i *pdf.Invoice) { i.Seller = strings.Repeat("s", pdf.MaxInvoiceTextLen+1) }},
		{"currency", func(i *pdf.Invoice) { i.Currency = "" }},
		{"currency", func(i *pdf.Invoice) { i.Currency = "eur" }},
		{"currency", func(i *pdf.Invoice) { i.Currency = "EURO" }},
		{"issued_at", func(i *pdf.Invoice) { i.IssuedAt = time.Time{} }},
		{"lines", func(i *pdf.Invoice) { i.Lines = nil }},
		{"lines", func(i *pdf.Invoice) { i.Lines = make([]pdf.Line, pdf.MaxInvoiceLines+1) }},
		{"lines[0].description", func(i *pdf.Invoice) { i.Lines[0].Description = "" }},
		{"lines[1].description", func(i *pdf.Invoice) { i.Lines[1].Description = "two\nlines" }},
		{"lines[2].quantity", func(i *pdf.Invoice) { i.Lines[2].Quantity = -1 }},
		{"lines[2].quantity", func(i *pdf.Invoice) { i.Lines[2].Quantity = 0 }},
		{"lines[0]", func(i *pdf.Invoice) { i.Lines[0].Quantity, i.Lines[0].UnitCents = math.MaxInt64/2, 3 }},
		{"lines[0]", func(i *pdf.Invoice) { i.Lines[0].Quantity, i.Lines[0].UnitCents = 2, math.MinInt64/2-1 }},
		{"lines", func(i *pdf.Invoice) {
			i.Lines = []pdf.Line{{"a", 1, math.MaxInt64}, {"b", 1, 1}}
		}},
	}
	if err := sampleInvoice("V-1").Validate(); err != nil {
		t.Fatalf("the sample invoice is invalid: %v", err)
	}
	for _, tt := range tests {
		inv := sampleInvoice("V-1")
		tt.change(&inv)
		err := inv.Validate()
		verr, ok := errors.AsType[*pdf.ValidationError](err)
		if !ok || verr.Field != tt.field || !errors.Is(err, pdf.ErrInvalidDocument) {
			t.Errorf("want a ValidationError for %s; got %v", tt.field, err)
		}
	}
}

func TestInvoiceTotalCents(t *testing.T) {
	t.Parallel()
	total, err := sampleInvoice("T-1").TotalCents()
	if err != nil || total != 368998 {
		t.Fatalf("total %d, %v; want 368998", total, err)
	}
	inv := sampleInvoice("T-2")
	inv.Lines = []pdf.Line{{"credit", 1, -500}, {"fee", 3, 33}}
	if total, err := inv.TotalCents(); err != nil || total != -401 {
		t.Fatalf("total %d, %v; want -401", total, err)
	}
	inv.Lines = []pdf.Line{{"max", 1, math.MaxInt64}}
	if total, err := inv.TotalCents(); err != nil || total != math.MaxInt64 {
		t.Fatalf("total %d, %v; want MaxInt64", total, err)
	}
}

// The rendered invoice shows its number, date, parties, every line with
// its amount, and the total; accented text survives.
func TestInvoiceRenderText(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice("2024-0017")
	inv.Customer = "Zoë Müller\nBahnhofstraße 3\n8001 Zürich"
	text := pdfText(t, render(t, inv))
	requireText(t, text,
		"Invoice", "2024-0017", "2024-05-01",
		"Babbage & Co", "1 Dorset Street", "Zoë Müller", "Bahnhofstraße 3", "8001 Zürich",
		"Analytical engine, rental", "1,250.00", "3,750.00",
		"Punched cards (box)", "19.99", "39.98",
		"Loyalty discount", "-100.00",
		"Total (EUR)", sampleTotal,
		"page 1 of 1",
	)
}

// Many lines run over several pages, each line whole on one of them.
func TestInvoiceRenderManyPages(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice("LONG-1")
	inv.Lines = nil
	var total int64
	for i := range 150 {
		desc := describe(i)
		if i%10 == 0 {
			desc += " with a long explanation " + strings.Repeat("that keeps going ", 12)
		}
		inv.Lines = append(inv.Lines, pdf.Line{Description: desc, Quantity: int64(i%7 + 1), UnitCents: int64(1000 + i)})
		total += int64(i%7+1) * int64(1000+i)
	}
	doc := render(t, inv)
	r, err := pdfread.NewReader(bytes.NewReader(doc), int64(len(doc)))
	if err != nil {
		t.Fatal(err)
	}
	pages := r.NumPage()
	if pages < 3 {
		t.Fatalf("%d pages for 150 lines; want several", pages)
	}
	text := pdfText(t, doc)
	for i := range 150 {
		requireText(t, text, describe(i))
	}
	requireText(t, text, fmt.Sprintf("page %d of %d", pages, pages))
	if want := fmt.Sprintf("%d,%03d.%02d", total/100/1000, total/100%1000, total%100); !strings.Contains(text, want) {
		t.Fatalf("the total %s is missing", want)
	}
}

// The same invoice renders to the same bytes, so a retry replaces a
// document with an identical one.
func TestInvoiceRenderIsDeterministic(t *testing.T) {
	t.Parallel()
	a, b := render(t, sampleInvoice("D-1")), render(t, sampleInvoice("D-1"))
	if !bytes.Equal(a, b) {
		t.Fatal("two renders of one invoice differ")
	}
	if c := render(t, sampleInvoice("D-2")); bytes.Equal(a, c) {
		t.Fatal("two different invoices render alike")
	}
}

// An invalid invoice is refused before anything is written.
func TestInvoiceRenderRefusesInvalid(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice("I-1")
	inv.Lines[0].Quantity = -3
	var b bytes.Buffer
	err := pdf.InvoiceRenderer{}.Render(&b, inv)
	if !errors.Is(err, pdf.ErrInvalidDocument) {
		t.Fatalf("error %v; want ErrInvalidDocument", err)
	}
	if b.Len() != 0 {
		t.Fatalf("%d bytes written for an invalid invoice", b.Len())
	}
}

// Text that looks like fpdf's page-count alias, or holds control
// characters, is printed as it is (minus the controls).
func TestInvoiceRenderOddText(t *testing.T) {
	t.Parallel()
	inv := sampleInvoice("{nb}")
	inv.Lines[0].Description = "tab\there {nb} \x01nb\x01 end"
	text := pdfText(t, render(t, inv))
	requireText(t, text, "Number: {nb}", "tab here {nb}", "nb end")
}

// The JSON form documented for producers without Go decodes into a valid
// invoice.
func TestInvoiceJSON(t *testing.T) {
	t.Parallel()
	const payload = `{"number": "2024-0017", "customer": "Ada Lovelace\n12 St James's Square\nLondon",
	 "currency": "EUR", "issued_at": "2024-05-01T00:00:00Z",
	 "lines": [{"description": "Analytical engine, rental", "quantity": 3, "unit_cents": 125000}]}`
	var inv pdf.Invoice
	if err := json.Unmarshal([]byte(payload), &inv); err != nil {
		t.Fatal(err)
	}
	total, err := inv.TotalCents()
	if err != nil || total != 375000 || inv.Number != "2024-0017" || !inv.IssuedAt.Equal(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("decoded %+v: total %d, %v", inv, total, err)
	}
	if inv.Topic() != "pdf.invoice" {
		t.Fatalf("topic %q", inv.Topic())
	}
}
