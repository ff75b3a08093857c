package pdf_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/relay"
)

// Register puts the invoice handler on a relay's registry, storing files
// under a directory; the handler's name for each document comes from the
// entry's key.
func ExampleRegister() {
	dir, err := os.MkdirTemp("", "invoices")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	h := relay.NewHandlers()
	err = pdf.Register(h, pdf.Config[pdf.Invoice]{
		Store:    pdf.DirStore{Dir: dir},
		Renderer: pdf.InvoiceRenderer{},
	}, relay.WithTimeout(30*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(h.Topics())
	fmt.Println(pdf.ObjectName("pdf.invoice", "invoice:2024-0017"))
	// Output:
	// [pdf.invoice]
	// pdf.invoice/invoice_2024-0017-3651656b34c22949643746a4bedde69a.pdf
}

// New builds the handler function itself, here called directly the way
// the relay calls it for one entry.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "invoices")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	handle, err := pdf.New(pdf.Config[pdf.Invoice]{
		Store:    pdf.DirStore{Dir: dir},
		Renderer: pdf.InvoiceRenderer{},
		Prefix:   "invoices/2024",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = handle(context.Background(), &relay.Entry[pdf.Invoice]{
		Key: "invoice:2024-0017",
		Payload: pdf.Invoice{
			Number:   "2024-0017",
			Customer: "Ada Lovelace",
			Currency: "EUR",
			IssuedAt: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
			Lines: []pdf.Line{
				{Description: "Analytical engine, rental", Quantity: 3, UnitCents: 125000},
				{Description: "Punched cards (box)", Quantity: 2, UnitCents: 1999},
			},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "invoices", "2024", "*.pdf"))
	for _, m := range matches {
		rel, _ := filepath.Rel(dir, m)
		fmt.Println(filepath.ToSlash(rel))
	}
	// Output:
	// invoices/2024/invoice_2024-0017-3651656b34c22949643746a4bedde69a.pdf
}
