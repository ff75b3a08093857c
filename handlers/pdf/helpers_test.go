package pdf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	pdfread "github.com/ledongthuc/pdf"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// sampleInvoice is a small valid invoice; its total is 3×1,250.00 +
// 2×19.99 − 1×100.00 = 3,689.98 EUR.
func sampleInvoice(number string) pdf.Invoice {
	return pdf.Invoice{
		Number:   number,
		Seller:   "Babbage & Co\n1 Dorset Street\nLondon",
		Customer: "Ada Lovelace\n12 St James's Square\nLondon",
		Currency: "EUR",
		IssuedAt: time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC),
		Lines: []pdf.Line{
			{Description: "Analytical engine, rental", Quantity: 3, UnitCents: 125000},
			{Description: "Punched cards (box)", Quantity: 2, UnitCents: 1999},
			{Description: "Loyalty discount", Quantity: 1, UnitCents: -10000},
		},
	}
}

const sampleTotal = "3,689.98"

// pdfText extracts the text of a PDF with a parser independent of the
// library that wrote it. It fails the test when doc is not a readable PDF.
func pdfText(t *testing.T, doc []byte) string {
	t.Helper()
	if !bytes.HasPrefix(doc, []byte("%PDF-")) {
		t.Fatalf("not a PDF: starts with %q", doc[:min(len(doc), 16)])
	}
	r, err := pdfread.NewReader(bytes.NewReader(doc), int64(len(doc)))
	if err != nil {
		t.Fatalf("parsing the PDF: %v", err)
	}
	if r.NumPage() < 1 {
		t.Fatal("the PDF has no pages")
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatalf("extracting the PDF's text: %v", err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var space = regexp.MustCompile(`\s+`)

// requireText fails unless every want occurs in text, ignoring white space
// (a wrapped description is split over lines).
func requireText(t *testing.T, text string, wants ...string) {
	t.Helper()
	flat := space.ReplaceAllString(text, "")
	for _, w := range wants {
		if !bytes.Contains([]byte(flat), []byte(space.ReplaceAllString(w, ""))) {
			t.Errorf("the PDF's text lacks %q; it is:\n%s", w, text)
		}
	}
}

// files lists every file (not directory) under dir, relative and
// slash-separated, sorted. Temporary files are included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// testStore wraps a BlobStore with the conformance modes and records
// every name it is asked to store and every successful store per name.
type testStore struct {
	inner pdf.BlobStore

	mu       sync.Mutex
	mode     handlertest.Mode
	failNext int      // fail this many more Puts with a retryable error
	names    []string // every Put's name, in order
	stored   map[string]int
}

func newTestStore(inner pdf.BlobStore) *testStore {
	return &testStore{inner: inner, stored: map[string]int{}}
}

// errDiskFull is the testStore's retryable failure.
var errDiskFull = errors.New("no space left on device (simulated)")

func (s *testStore) Put(ctx context.Context, name string, r io.Reader) error {
	s.mu.Lock()
	s.names = append(s.names, name)
	mode := s.mode
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	s.mu.Unlock()
	switch {
	case fail || mode == handlertest.Retryable:
		return errDiskFull
	case mode == handlertest.Permanent:
		return relay.Permanent(errors.New("the store refuses this object (simulated)"))
	case mode == handlertest.Hang:
		<-ctx.Done()
		return ctx.Err()
	}
	err := s.inner.Put(ctx, name, r)
	if err == nil {
		s.mu.Lock()
		s.stored[name]++
		s.mu.Unlock()
	}
	return err
}

func (s *testStore) setMode(m handlertest.Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

func (s *testStore) effects(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored[name]
}

func (s *testStore) putNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.names)
}

// invoices is the configuration of an invoice handler storing in store.
func invoices(store pdf.BlobStore) pdf.Config[pdf.Invoice] {
	return pdf.Config[pdf.Invoice]{Store: store, Renderer: pdf.InvoiceRenderer{}}
}

// startRelay makes a database and runs a relay (handlertest.StartRelay)
// with the handlers that register registers.
func startRelay(t *testing.T, register func(*relay.Handlers) error) (*outboxtest.DB, *handlertest.Recorder) {
	t.Helper()
	db := outboxtest.New(t)
	h := relay.NewHandlers()
	if err := register(h); err != nil {
		t.Fatalf("registering: %v", err)
	}
	return db, handlertest.StartRelay(t, db.Pool, h)
}

// readFile reads a file, failing the test if it cannot.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// render renders inv with InvoiceRenderer, failing the test on error.
func render(t *testing.T, inv pdf.Invoice) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := (pdf.InvoiceRenderer{}).Render(&b, inv); err != nil {
		t.Fatalf("rendering invoice %s: %v", inv.Number, err)
	}
	return b.Bytes()
}

func describe(i int) string { return fmt.Sprintf("item %03d", i) }
