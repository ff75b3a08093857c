package pdf

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-pdf/fpdf"
)

// Limits of an Invoice, checked by Invoice.Validate.
const (
	// MaxInvoiceLines bounds the number of lines of one invoice.
	MaxInvoiceLines = 1000
	// MaxInvoiceNumberLen bounds Invoice.Number, in bytes.
	MaxInvoiceNumberLen = 64
	// MaxInvoiceTextLen bounds Invoice.Seller, Invoice.Customer and each
	// Line.Description, in bytes.
	MaxInvoiceTextLen = 1000
)

// Invoice is the payload of an invoice document, topic "pdf.invoice". Its
// JSON form, for producers without Go (the fields are snake_case):
//
//	{"number": "2024-0017", "customer": "Ada Lovelace\n12 St James's Square\nLondon",
//	 "currency": "EUR", "issued_at": "2024-05-01T00:00:00Z",
//	 "lines": [{"description": "Analytical engine, rental", "quantity": 3, "unit_cents": 125000}]}
//
// Amounts are integers in hundredths of the currency unit (cents), so totals
// are exact. Text is UTF-8; InvoiceRenderer prints it with the standard
// Helvetica font, which covers Western European text (Windows-1252), and
// prints any other character as '.'.
type Invoice struct {
	// Number identifies the invoice, required, at most
	// MaxInvoiceNumberLen bytes on one line.
	Number string `json:"number"`
	// Seller is who issues the invoice, optional; newlines separate lines
	// of an address.
	Seller string `json:"seller,omitempty"`
	// Customer is who the invoice is for, required; newlines separate
	// lines of an address.
	Customer string `json:"customer"`
	// Currency is an ISO 4217 code of three upper-case letters, such as
	// "EUR" or "USD", required.
	Currency string `json:"currency"`
	// IssuedAt is the date of issue, required. It is printed as a date in
	// its own time zone, and is also the PDF's creation date, so the same
	// invoice always renders to the same bytes.
	IssuedAt time.Time `json:"issued_at"`
	// Lines are the invoice's items: at least one, at most
	// MaxInvoiceLines.
	Lines []Line `json:"lines"`
}

// Line is one item of an Invoice.
type Line struct {
	// Description says what was sold, required, on one line (a long one is
	// wrapped when printed).
	Description string `json:"description"`
	// Quantity is a positive number of units.
	Quantity int64 `json:"quantity"`
	// UnitCents is the price of one unit in cents. It may be negative, for
	// a discount or a credit.
	UnitCents int64 `json:"unit_cents"`
}

// Topic returns "pdf.invoice".
func (Invoice) Topic() string { return "pdf.invoice" }

// Validate checks the invoice against the rules documented on its fields
// and returns the first problem as a *ValidationError (matching
// ErrInvalidDocument), or nil. It also checks that no line amount and not
// the total overflow int64 cents.
func (inv Invoice) Validate() error {
	_, err := inv.TotalCents()
	return err
}

// TotalCents validates the invoice (see Validate) and returns its total in
// cents: the sum of each line's quantity times unit price.
func (inv Invoice) TotalCents() (int64, error) {
	if err := checkText("number", inv.Number, MaxInvoiceNumberLen, true, false); err != nil {
		return 0, err
	}
	if err := checkText("seller", inv.Seller, MaxInvoiceTextLen, false, true); err != nil {
		return 0, err
	}
	if err := checkText("customer", inv.Customer, MaxInvoiceTextLen, true, true); err != nil {
		return 0, err
	}
	if !isCurrencyCode(inv.Currency) {
		return 0, invalid("currency", "%q is not an ISO 4217 code of three upper-case letters", inv.Currency)
	}
	if inv.IssuedAt.IsZero() {
		return 0, invalid("issued_at", "missing")
	}
	switch {
	case len(inv.Lines) == 0:
		return 0, invalid("lines", "an invoice needs at least one line")
	case len(inv.Lines) > MaxInvoiceLines:
		return 0, invalid("lines", "%d lines; at most %d", len(inv.Lines), MaxInvoiceLines)
	}
	var total int64
	for i, l := range inv.Lines {
		field := fmt.Sprintf("lines[%d]", i)
		if err := checkText(field+".description", l.Description, MaxInvoiceTextLen, true, false); err != nil {
			return 0, err
		}
		if l.Quantity < 1 {
			return 0, invalid(field+".quantity", "must be at least 1, got %d", l.Quantity)
		}
		amount, ok := mulCents(l.Quantity, l.UnitCents)
		if !ok {
			return 0, invalid(field, "%d × %d cents overflows", l.Quantity, l.UnitCents)
		}
		if total, ok = addCents(total, amount); !ok {
			return 0, invalid("lines", "the total overflows at line %d", i)
		}
	}
	return total, nil
}

func checkText(field, s string, maxLen int, required, multiline bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return invalid(field, "missing")
	case len(s) > maxLen:
		return invalid(field, "%d bytes; at most %d", len(s), maxLen)
	case !utf8.ValidString(s):
		return invalid(field, "not valid UTF-8")
	case !multiline && strings.ContainsAny(s, "\r\n"):
		return invalid(field, "must be on one line")
	}
	return nil
}

func isCurrencyCode(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := range 3 {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// mulCents returns q*u, with q >= 1, and whether it fits in an int64.
func mulCents(q, u int64) (int64, bool) {
	p := q * u
	return p, p/q == u
}

// addCents returns a+b and whether it fits in an int64.
func addCents(a, b int64) (int64, bool) {
	if b > 0 && a > math.MaxInt64-b || b < 0 && a < math.MinInt64-b {
		return 0, false
	}
	return a + b, true
}

// formatCents formats an amount in cents as "-1,234.56".
func formatCents(c int64) string {
	neg := c < 0
	u := uint64(c)
	if neg {
		u = -u // two's complement magnitude; right for math.MinInt64 too
	}
	units := strconv.FormatUint(u/100, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, d := range units {
		if i > 0 && (len(units)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	fmt.Fprintf(&b, ".%02d", u%100)
	return b.String()
}

// InvoiceRenderer renders an Invoice as an A4 PDF: the number and date,
// seller and customer, a table of lines (description, quantity, unit price,
// amount) continued over as many pages as needed, and the total. It
// validates the invoice first and returns Validate's error, which the
// handler treats as permanent. The zero value is ready to use.
//
// The output is deterministic: the same invoice gives the same bytes.
type InvoiceRenderer struct{}

// Page geometry in millimetres (A4 portrait).
const (
	pageMargin   = 15.0
	footerMargin = 20.0 // bottom space kept free for the footer
	lineHeight   = 5.0
	colDesc      = 95.0
	colQty       = 20.0
	colUnit      = 32.5
	colAmount    = 32.5
)

// pageCountAlias stands for the page count until the document is closed.
// Its control characters cannot occur in printed text (cleanText replaces
// them), so an invoice's own text is never mistaken for it.
const pageCountAlias = "\x01nb\x01"

// Render writes inv as a PDF to w.
func (InvoiceRenderer) Render(w io.Writer, inv Invoice) error {
	total, err := inv.TotalCents()
	if err != nil {
		return err
	}
	f := fpdf.New("P", "mm", "A4", "")
	f.SetMargins(pageMargin, pageMargin, pageMargin)
	f.SetAutoPageBreak(true, footerMargin)
	f.SetCatalogSort(true)
	f.SetCreationDate(inv.IssuedAt)
	f.SetModificationDate(inv.IssuedAt)
	f.SetTitle("Invoice "+inv.Number, true)
	f.AliasNbPages(pageCountAlias)
	cp := f.UnicodeTranslatorFromDescriptor("") // Windows-1252, the core fonts' encoding
	tr := func(s string, multiline bool) string { return cp(cleanText(s, multiline)) }

	f.SetFooterFunc(func() {
		f.SetY(-footerMargin + 5)
		f.SetFont("Helvetica", "", 8)
		f.CellFormat(0, lineHeight, tr("Invoice "+inv.Number, false)+fmt.Sprintf(" - page %d of %s", f.PageNo(), pageCountAlias), "", 0, "C", false, 0, "")
	})
	f.AddPage()

	f.SetFont("Helvetica", "B", 18)
	f.CellFormat(0, 10, "Invoice", "", 1, "L", false, 0, "")
	f.SetFont("Helvetica", "", 10)
	f.CellFormat(0, lineHeight, "Number: "+tr(inv.Number, false), "", 1, "L", false, 0, "")
	f.CellFormat(0, lineHeight, "Issued: "+inv.IssuedAt.Format(time.DateOnly), "", 1, "L", false, 0, "")
	f.Ln(lineHeight)
	if strings.TrimSpace(inv.Seller) != "" {
		f.SetFont("Helvetica", "B", 10)
		f.CellFormat(0, lineHeight, "From", "", 1, "L", false, 0, "")
		f.SetFont("Helvetica", "", 10)
		f.MultiCell(0, lineHeight, tr(inv.Seller, true), "", "L", false)
		f.Ln(lineHeight)
	}
	f.SetFont("Helvetica", "B", 10)
	f.CellFormat(0, lineHeight, "Bill to", "", 1, "L", false, 0, "")
	f.SetFont("Helvetica", "", 10)
	f.MultiCell(0, lineHeight, tr(inv.Customer, true), "", "L", false)
	f.Ln(lineHeight)

	_, pageHeight := f.GetPageSize()
	bottom := pageHeight - footerMargin
	tableHeader := func() {
		f.SetFont("Helvetica", "B", 10)
		f.CellFormat(colDesc, lineHeight+1, "Description", "B", 0, "L", false, 0, "")
		f.CellFormat(colQty, lineHeight+1, "Qty", "B", 0, "R", false, 0, "")
		f.CellFormat(colUnit, lineHeight+1, "Unit ("+inv.Currency+")", "B", 0, "R", false, 0, "")
		f.CellFormat(colAmount, lineHeight+1, "Amount ("+inv.Currency+")", "B", 1, "R", false, 0, "")
		f.SetFont("Helvetica", "", 10)
	}
	tableHeader()
	for _, l := range inv.Lines {
		desc := f.SplitLines([]byte(tr(l.Description, false)), colDesc)
		rowHeight := float64(max(len(desc), 1)) * lineHeight
		if f.GetY()+rowHeight > bottom {
			f.AddPage()
			tableHeader()
		}
		x, y := f.GetXY()
		for i, part := range desc {
			f.SetXY(x, y+float64(i)*lineHeight)
			f.CellFormat(colDesc, lineHeight, string(part), "", 0, "L", false, 0, "")
		}
		amount := l.Quantity * l.UnitCents // checked by TotalCents
		f.SetXY(x+colDesc, y)
		f.CellFormat(colQty, lineHeight, strconv.FormatInt(l.Quantity, 10), "", 0, "R", false, 0, "")
		f.CellFormat(colUnit, lineHeight, formatCents(l.UnitCents), "", 0, "R", false, 0, "")
		f.CellFormat(colAmount, lineHeight, formatCents(amount), "", 0, "R", false, 0, "")
		f.SetXY(x, y+rowHeight)
	}
	if f.GetY()+2*lineHeight > bottom {
		f.AddPage()
	}
	f.SetFont("Helvetica", "B", 11)
	f.CellFormat(colDesc+colQty+colUnit, lineHeight+2, "Total ("+inv.Currency+")", "T", 0, "R", false, 0, "")
	f.CellFormat(colAmount, lineHeight+2, formatCents(total), "T", 1, "R", false, 0, "")

	if err := f.Output(w); err != nil {
		return fmt.Errorf("pdf: rendering invoice %q: %w", inv.Number, err)
	}
	return nil
}

// cleanText replaces control characters (all of them, or all but newlines
// when multiline) by spaces, so they cannot disturb the page.
func cleanText(s string, multiline bool) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r == '\n' && multiline {
			return r
		}
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
