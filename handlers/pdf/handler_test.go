package pdf_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// An invoice goes through a real relay into a real directory: the file is
// a PDF with the invoice's lines and total, and where it went is recorded
// with the entry and with its processed key.
func TestInvoiceIsStoredAndRecorded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, ev := startRelay(t, func(h *relay.Handlers) error {
		return pdf.Register(h, pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{})
	})
	ctx := context.Background()
	const key = "invoice:2024-0017"
	inv := sampleInvoice("2024-0017")
	res, err := outbox.Enqueue(ctx, db.Pool, inv, outbox.WithKey(key))
	if err != nil {
		t.Fatal(err)
	}
	ev.Wait(t, res.ID, relay.EventDone)

	name := pdf.ObjectName("pdf.invoice", key)
	if got := files(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("files in the store: %q; want just %q", got, name)
	}
	doc := readFile(t, filepath.Join(dir, filepath.FromSlash(name)))
	sum := sha256.Sum256(doc)
	want := pdf.Stored{
		Location: filepath.Join(dir, filepath.FromSlash(name)),
		Name:     name,
		Bytes:    int64(len(doc)),
		SHA256:   hex.EncodeToString(sum[:]),
	}

	e, err := outbox.Get(ctx, db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StateDone {
		t.Fatalf("entry state %s; want done", e.State)
	}
	var got pdf.Stored
	if err := json.Unmarshal(e.Result, &got); err != nil {
		t.Fatalf("entry result %s: %v", e.Result, err)
	}
	if got != want {
		t.Fatalf("entry result %+v; want %+v", got, want)
	}

	var raw []byte
	if err := db.Pool.QueryRow(ctx,
		`SELECT result FROM outbox_processed_keys WHERE entry_id = $1 AND key = $2`, res.ID, key).Scan(&raw); err != nil {
		t.Fatalf("reading the processed key: %v", err)
	}
	var fromKey pdf.Stored
	if err := json.Unmarshal(raw, &fromKey); err != nil {
		t.Fatalf("processed key result %s: %v", raw, err)
	}
	if fromKey != want {
		t.Fatalf("processed key result %+v; want %+v", fromKey, want)
	}

	text := pdfText(t, doc)
	requireText(t, text, "2024-0017", "Ada Lovelace", "Babbage & Co", sampleTotal)
	for _, l := range inv.Lines {
		requireText(t, text, l.Description)
	}
}

// A retry stores the document under the same name, replacing it: one file.
func TestRetryUsesTheSameName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newTestStore(pdf.DirStore{Dir: dir})
	store.failNext = 1
	db, ev := startRelay(t, func(h *relay.Handlers) error {
		return pdf.Register(h, store, pdf.InvoiceRenderer{})
	})
	const key = "invoice:retry"
	res, err := outbox.Enqueue(context.Background(), db.Pool, sampleInvoice("R-1"), outbox.WithKey(key))
	if err != nil {
		t.Fatal(err)
	}
	retry := ev.Wait(t, res.ID, relay.EventRetry)
	if !errors.Is(retry.Err, errDiskFull) {
		t.Fatalf("retry error %v; want the store's error", retry.Err)
	}
	ev.Wait(t, res.ID, relay.EventDone)

	name := pdf.ObjectName("pdf.invoice", key)
	if got := store.putNames(); !slices.Equal(got, []string{name, name}) {
		t.Fatalf("names of the two attempts: %q; want %q twice", got, name)
	}
	if got := files(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("files in the store: %q; want just %q", got, name)
	}
}

// A payload that fails validation is dead-lettered on its first attempt,
// and nothing is stored.
func TestInvalidInvoiceIsDeadLettered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newTestStore(pdf.DirStore{Dir: dir})
	db, ev := startRelay(t, func(h *relay.Handlers) error {
		return pdf.Register(h, store, pdf.InvoiceRenderer{})
	})
	inv := sampleInvoice("BAD-1")
	inv.Lines[1].Quantity = -2
	res, err := outbox.Enqueue(context.Background(), db.Pool, inv, outbox.WithKey("invoice:bad"))
	if err != nil {
		t.Fatal(err)
	}
	dead := ev.Wait(t, res.ID, relay.EventDead)
	if dead.Attempt != 1 {
		t.Fatalf("dead after attempt %d; want 1", dead.Attempt)
	}
	verr, ok := errors.AsType[*pdf.ValidationError](dead.Err)
	if !ok || verr.Field != "lines[1].quantity" || !errors.Is(dead.Err, pdf.ErrInvalidDocument) {
		t.Fatalf("dead-letter error %v; want a ValidationError for lines[1].quantity", dead.Err)
	}
	if n := ev.Count(res.ID, relay.EventRetry); n != 0 {
		t.Fatalf("%d retries of an invalid invoice", n)
	}
	if got := store.putNames(); len(got) != 0 {
		t.Fatalf("the store was called for an invalid invoice: %q", got)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files stored for an invalid invoice: %q", got)
	}
	e, err := outbox.Get(context.Background(), db.Pool, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != outbox.StateDead || e.LastError == nil || !strings.Contains(*e.LastError, "quantity") {
		t.Fatalf("entry %s with last error %v; want dead, naming the quantity", e.State, e.LastError)
	}
}

// Relay options given to Register reach relay.Handle: a per-handler timeout
// ends a hung store. The timeout leaves the healthy attempt afterwards
// (render and store, under -race on a loaded machine) ample time: a hung
// store is hung however long it is given.
func TestRegisterPassesHandlerOptions(t *testing.T) {
	t.Parallel()
	store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
	store.setMode(handlertest.Hang)
	db, ev := startRelay(t, func(h *relay.Handlers) error {
		return pdf.Register(h, store, pdf.InvoiceRenderer{},
			pdf.WithHandlerOptions(relay.WithTimeout(2*time.Second)))
	})
	res, err := outbox.Enqueue(context.Background(), db.Pool, sampleInvoice("T-1"), outbox.WithKey("invoice:timeout"))
	if err != nil {
		t.Fatal(err)
	}
	retry := ev.Wait(t, res.ID, relay.EventRetry)
	if !errors.Is(retry.Err, context.DeadlineExceeded) && !errors.Is(retry.Err, relay.ErrHandlerTimeout) {
		t.Fatalf("retry error %v; want the handler timeout", retry.Err)
	}
	store.setMode(handlertest.OK)
	ev.Wait(t, res.ID, relay.EventDone)
}

// newHandler builds a handler for direct calls, failing the test on error.
func newHandler[T outbox.Message](t *testing.T, store pdf.BlobStore, r pdf.Renderer[T], opts ...pdf.Option) relay.HandlerFunc[T] {
	t.Helper()
	fn, err := pdf.New(store, r, opts...)
	if err != nil {
		t.Fatalf("pdf.New: %v", err)
	}
	return fn
}

func entry(key string, inv pdf.Invoice) *relay.Entry[pdf.Invoice] {
	return &relay.Entry[pdf.Invoice]{Topic: "pdf.invoice", Key: key, Attempt: 1, MaxAttempts: 25, Payload: inv}
}

// Keys are arbitrary strings; none makes the handler write outside the
// store's directory, or under a name other than ObjectName's.
func TestKeysCannotEscapeTheStore(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	handle := newHandler(t, pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{})
	keys := []string{
		"../../escape", "/etc/passwd", "..", ".", "a/../../b", `..\..\windows`, ".hidden",
		"C:\\x", "key\x00nul", "tab\tand\nnewline", "ünïcödé/../..", strings.Repeat("../", 85),
		strings.Repeat("x", 255), "",
	}
	var want []string
	for _, k := range keys {
		if err := handle(context.Background(), entry(k, sampleInvoice("K"))); err != nil {
			t.Fatalf("key %q: %v", k, err)
		}
		want = append(want, "store/"+pdf.ObjectName("pdf.invoice", k))
	}
	slices.Sort(want)
	if got := files(t, parent); !slices.Equal(got, want) {
		t.Fatalf("files under the store's parent:\n%q\nwant\n%q", got, want)
	}
}

// A context that is already done stops the handler before it renders or
// stores, with the context's error and cause.
func TestHandlerHonoursADoneContext(t *testing.T) {
	t.Parallel()
	store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
	rendered := false
	handle := newHandler(t, store, pdf.RenderFunc[pdf.Invoice](func(w io.Writer, inv pdf.Invoice) error {
		rendered = true
		return pdf.InvoiceRenderer{}.Render(w, inv)
	}))
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(relay.ErrLeaseLost)
	err := handle(ctx, entry("k", sampleInvoice("C-1")))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, relay.ErrLeaseLost) {
		t.Fatalf("error %v; want context.Canceled with cause ErrLeaseLost", err)
	}
	if _, ok := errors.AsType[*relay.PermanentError](err); ok {
		t.Fatalf("a cancelled attempt is permanent: %v", err)
	}
	if rendered || len(store.putNames()) != 0 {
		t.Fatalf("rendered %v, stored %q after the context was done", rendered, store.putNames())
	}
}

// Render failures are permanent, unless the renderer asks for a retry;
// nothing reaches the store.
func TestRenderFailuresArePermanent(t *testing.T) {
	t.Parallel()
	errFont := errors.New("font missing")
	tests := []struct {
		name      string
		render    pdf.RenderFunc[pdf.Invoice]
		opts      []pdf.Option
		permanent bool
		is        error
	}{
		{"error", func(io.Writer, pdf.Invoice) error { return errFont }, nil, true, errFont},
		{"retry after", func(io.Writer, pdf.Invoice) error { return relay.RetryAfter(time.Second, errFont) }, nil, false, errFont},
		{"panic", func(io.Writer, pdf.Invoice) error { panic("boom") }, nil, true, nil},
		{"nothing written", func(io.Writer, pdf.Invoice) error { return nil }, nil, true, nil},
		{"not a PDF", func(w io.Writer, _ pdf.Invoice) error { _, err := io.WriteString(w, "hello"); return err }, nil, true, nil},
		{"too large", pdf.InvoiceRenderer{}.Render, []pdf.Option{pdf.WithMaxBytes(100)}, true, pdf.ErrTooLarge},
		{"invalid invoice", func(w io.Writer, inv pdf.Invoice) error {
			inv.Currency = "euro"
			return pdf.InvoiceRenderer{}.Render(w, inv)
		}, nil, true, pdf.ErrInvalidDocument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
			handle := newHandler(t, store, tt.render, tt.opts...)
			err := handle(context.Background(), entry("k", sampleInvoice("F-1")))
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := errors.AsType[*relay.PermanentError](err); ok != tt.permanent {
				t.Fatalf("permanent = %v; want %v (error %v)", ok, tt.permanent, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v does not match %v", err, tt.is)
			}
			if got := store.putNames(); len(got) != 0 {
				t.Fatalf("stored %q after a failed render", got)
			}
		})
	}
}

// Store errors are retried unless the store marks them permanent.
func TestStoreErrorsAreRetriedUnlessPermanent(t *testing.T) {
	t.Parallel()
	for _, mode := range []handlertest.Mode{handlertest.Retryable, handlertest.Permanent} {
		store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
		store.setMode(mode)
		handle := newHandler(t, store, pdf.InvoiceRenderer{})
		err := handle(context.Background(), entry("k", sampleInvoice("S-1")))
		_, permanent := errors.AsType[*relay.PermanentError](err)
		if err == nil || permanent != (mode == handlertest.Permanent) {
			t.Fatalf("mode %d: error %v, permanent %v", mode, err, permanent)
		}
		if mode == handlertest.Retryable && !errors.Is(err, errDiskFull) {
			t.Fatalf("error %v does not wrap the store's", err)
		}
	}
}

// The prefix option names where documents go.
func TestWithPrefix(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "invoices", "tenant-7/invoices/2024"} {
		dir := t.TempDir()
		handle := newHandler(t, pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{}, pdf.WithPrefix(prefix))
		if err := handle(context.Background(), entry("inv-1", sampleInvoice("P-1"))); err != nil {
			t.Fatal(err)
		}
		name := pdf.ObjectName(prefix, "inv-1")
		if prefix != "" && !strings.HasPrefix(name, prefix+"/") {
			t.Fatalf("name %q lacks the prefix %q", name, prefix)
		}
		if got := files(t, dir); !slices.Equal(got, []string{name}) {
			t.Fatalf("prefix %q: files %q; want %q", prefix, got, name)
		}
	}
}

type pointerDoc struct{ topic string }

func (d *pointerDoc) Topic() string { return d.topic }

type pathTopic struct{}

func (pathTopic) Topic() string { return "../escape" }

// New refuses configurations that cannot work, with errors that match
// relay.ErrInvalidConfig.
func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var nilStore *testStore
	var nilRender pdf.RenderFunc[pdf.Invoice]
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, relay.ErrInvalidConfig) {
			t.Errorf("%s: error %v; want one matching relay.ErrInvalidConfig", name, err)
		}
	}
	_, err := pdf.New[pdf.Invoice](nil, pdf.InvoiceRenderer{})
	check("nil store", err)
	_, err = pdf.New[pdf.Invoice](nilStore, pdf.InvoiceRenderer{})
	check("typed nil store", err)
	_, err = pdf.New[pdf.Invoice](pdf.DirStore{Dir: dir}, nil)
	check("nil renderer", err)
	_, err = pdf.New(pdf.DirStore{Dir: dir}, nilRender)
	check("nil RenderFunc", err)
	_, err = pdf.New(pdf.DirStore{}, pdf.InvoiceRenderer{})
	check("empty Dir", err)
	for _, p := range []string{"../x", "/abs", "a//b", "a/", ".hidden", "a/./b", "a b", `a\b`, strings.Repeat("p", 129)} {
		_, err = pdf.New(pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{}, pdf.WithPrefix(p))
		check("prefix "+p, err)
	}
	_, err = pdf.New(pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{}, pdf.WithMaxBytes(0))
	check("WithMaxBytes(0)", err)
	_, err = pdf.New(pdf.DirStore{Dir: dir}, pdf.RenderFunc[*pointerDoc](func(io.Writer, *pointerDoc) error { return nil }))
	check("topic panics on the zero value", err)
	_, err = pdf.New(pdf.DirStore{Dir: dir}, pdf.RenderFunc[pathTopic](func(io.Writer, pathTopic) error { return nil }))
	check("topic unusable as a prefix", err)
	if _, err = pdf.New(pdf.DirStore{Dir: dir}, pdf.RenderFunc[pathTopic](func(io.Writer, pathTopic) error { return nil }),
		pdf.WithPrefix("paths")); err != nil {
		t.Errorf("an explicit prefix for an unusable topic: %v", err)
	}
	check("nil handlers", pdf.Register(nil, pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{}))

	h := relay.NewHandlers()
	check("Register with a bad option", pdf.Register(h, pdf.DirStore{Dir: dir}, pdf.InvoiceRenderer{}, pdf.WithPrefix("..")))
	if got := h.Topics(); len(got) != 0 {
		t.Errorf("a failed Register registered %q", got)
	}
}

// ObjectName is deterministic, keeps keys apart that differ only in
// replaced characters or case, and bounds the name's length.
func TestObjectName(t *testing.T) {
	t.Parallel()
	if a, b := pdf.ObjectName("p", "invoice:17"), pdf.ObjectName("p", "invoice:17"); a != b {
		t.Fatalf("not deterministic: %q, %q", a, b)
	}
	name := pdf.ObjectName("pdf.invoice", "invoice:2024-0017")
	if !strings.HasPrefix(name, "pdf.invoice/invoice_2024-0017-") || !strings.HasSuffix(name, ".pdf") {
		t.Fatalf("name %q; want pdf.invoice/invoice_2024-0017-<hash>.pdf", name)
	}
	seen := map[string]string{}
	for _, k := range []string{"a/b", "a_b", "a:b", "A/B", "a/B", "", ".", "..", "_"} {
		n := pdf.ObjectName("p", k)
		if prev, ok := seen[n]; ok {
			t.Fatalf("keys %q and %q share the name %q", prev, k, n)
		}
		seen[n] = k
	}
	if n := pdf.ObjectName("", strings.Repeat("é", 200)); len(n) > 120 || strings.Contains(n, "/") {
		t.Fatalf("name of a long key: %q (%d bytes)", n, len(n))
	}
}

// Stored results survive JSON the way the relay saves them.
func TestStoredJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(pdf.Stored{Location: "/x/y.pdf", Name: "y.pdf", Bytes: 12, SHA256: "ab"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"location":"/x/y.pdf","name":"y.pdf","bytes":12,"sha256":"ab"}`; !bytes.Equal(b, []byte(want)) {
		t.Fatalf("JSON %s; want %s", b, want)
	}
}
