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
		return pdf.Register(h, invoices(pdf.DirStore{Dir: dir}))
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
		Name:   name,
		Bytes:  int64(len(doc)),
		SHA256: hex.EncodeToString(sum[:]),
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
		return pdf.Register(h, invoices(store))
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
		return pdf.Register(h, invoices(store))
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
		return pdf.Register(h, invoices(store), relay.WithTimeout(2*time.Second))
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
func newHandler[T outbox.Message](t *testing.T, cfg pdf.Config[T]) relay.HandlerFunc[T] {
	t.Helper()
	fn, err := pdf.New(cfg)
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
	handle := newHandler(t, invoices(pdf.DirStore{Dir: dir}))
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
	handle := newHandler(t, pdf.Config[pdf.Invoice]{Store: store, Renderer: pdf.RenderFunc[pdf.Invoice](func(w io.Writer, inv pdf.Invoice) error {
		rendered = true
		return pdf.InvoiceRenderer{}.Render(w, inv)
	})})
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
		maxBytes  int64
		permanent bool
		is        error
	}{
		{"error", func(io.Writer, pdf.Invoice) error { return errFont }, 0, true, errFont},
		{"retry after", func(io.Writer, pdf.Invoice) error { return relay.RetryAfter(time.Second, errFont) }, 0, false, errFont},
		{"panic", func(io.Writer, pdf.Invoice) error { panic("boom") }, 0, true, nil},
		{"nothing written", func(io.Writer, pdf.Invoice) error { return nil }, 0, true, nil},
		{"not a PDF", func(w io.Writer, _ pdf.Invoice) error { _, err := io.WriteString(w, "hello"); return err }, 0, true, nil},
		{"too large", pdf.InvoiceRenderer{}.Render, 100, true, pdf.ErrTooLarge},
		{"invalid invoice", func(w io.Writer, inv pdf.Invoice) error {
			inv.Currency = "euro"
			return pdf.InvoiceRenderer{}.Render(w, inv)
		}, 0, true, pdf.ErrInvalidDocument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
			handle := newHandler(t, pdf.Config[pdf.Invoice]{Store: store, Renderer: tt.render, MaxBytes: tt.maxBytes})
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
		handle := newHandler(t, invoices(store))
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

// Config.Prefix names where documents go; NoPrefix stores them at the top.
func TestPrefix(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "invoices", "tenant-7/invoices/2024"} {
		dir := t.TempDir()
		cfg := invoices(pdf.DirStore{Dir: dir})
		cfg.Prefix, cfg.NoPrefix = prefix, prefix == ""
		handle := newHandler(t, cfg)
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

// New and Register refuse configurations that cannot work, each problem a
// *pdf.ConfigError naming its field, and Register then registers nothing.
func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var nilStore *testStore
	var nilRender pdf.RenderFunc[pdf.Invoice]
	good := invoices(pdf.DirStore{Dir: dir})
	with := func(edit func(*pdf.Config[pdf.Invoice])) pdf.Config[pdf.Invoice] {
		c := good
		edit(&c)
		return c
	}
	tests := []struct {
		name  string
		cfg   pdf.Config[pdf.Invoice]
		field string
	}{
		{"nil store", with(func(c *pdf.Config[pdf.Invoice]) { c.Store = nil }), "Store"},
		{"typed nil store", with(func(c *pdf.Config[pdf.Invoice]) { c.Store = nilStore }), "Store"},
		{"nil renderer", with(func(c *pdf.Config[pdf.Invoice]) { c.Renderer = nil }), "Renderer"},
		{"nil RenderFunc", with(func(c *pdf.Config[pdf.Invoice]) { c.Renderer = nilRender }), "Renderer"},
		{"empty Dir", with(func(c *pdf.Config[pdf.Invoice]) { c.Store = pdf.DirStore{} }), "Store.Dir"},
		{"relative BaseURL", with(func(c *pdf.Config[pdf.Invoice]) { c.Store = pdf.DirStore{Dir: dir, BaseURL: "/docs"} }), "Store.BaseURL"},
		{"BaseURL with a query", with(func(c *pdf.Config[pdf.Invoice]) {
			c.Store = pdf.DirStore{Dir: dir, BaseURL: "https://cdn.example.com/docs?token=x"}
		}), "Store.BaseURL"},
		{"MaxBytes -1", with(func(c *pdf.Config[pdf.Invoice]) { c.MaxBytes = -1 }), "MaxBytes"},
		{"MaxBytes very negative", with(func(c *pdf.Config[pdf.Invoice]) { c.MaxBytes = -1 << 40 }), "MaxBytes"},
		{"Prefix and NoPrefix", with(func(c *pdf.Config[pdf.Invoice]) { c.Prefix, c.NoPrefix = "x", true }), "NoPrefix"},
	}
	for _, p := range []string{"../x", "/abs", "a//b", "a/", ".hidden", "a/./b", "a b", `a\b`, strings.Repeat("p", 129)} {
		tests = append(tests, struct {
			name  string
			cfg   pdf.Config[pdf.Invoice]
			field string
		}{"prefix " + p, with(func(c *pdf.Config[pdf.Invoice]) { c.Prefix = p }), "Prefix"})
	}
	for _, tc := range tests {
		_, err := pdf.New(tc.cfg)
		ce, ok := errors.AsType[*pdf.ConfigError](err)
		if !errors.Is(err, pdf.ErrInvalidConfig) || !ok || ce.Field != tc.field {
			t.Errorf("%s: error %v; want a *pdf.ConfigError for %s", tc.name, err, tc.field)
			continue
		}
		if !strings.HasPrefix(ce.Error(), "pdf: invalid config "+tc.field+": ") {
			t.Errorf("%s: message %q", tc.name, ce.Error())
		}
		h := relay.NewHandlers()
		if err := pdf.Register(h, tc.cfg); !errors.Is(err, pdf.ErrInvalidConfig) {
			t.Errorf("%s: Register: %v; want ErrInvalidConfig", tc.name, err)
		}
		if got := h.Topics(); len(got) != 0 {
			t.Errorf("%s: a failed Register registered %q", tc.name, got)
		}
	}

	_, err := pdf.New(pdf.Config[*pointerDoc]{Store: pdf.DirStore{Dir: dir}, Renderer: pdf.RenderFunc[*pointerDoc](func(io.Writer, *pointerDoc) error { return nil })})
	if ce, ok := errors.AsType[*pdf.ConfigError](err); !ok || ce.Field != "Prefix" {
		t.Errorf("topic panics on the zero value: %v; want a ConfigError for Prefix", err)
	}
	paths := pdf.RenderFunc[pathTopic](func(io.Writer, pathTopic) error { return nil })
	_, err = pdf.New(pdf.Config[pathTopic]{Store: pdf.DirStore{Dir: dir}, Renderer: paths})
	if ce, ok := errors.AsType[*pdf.ConfigError](err); !ok || ce.Field != "Prefix" {
		t.Errorf("topic unusable as a prefix: %v; want a ConfigError for Prefix", err)
	}
	if _, err = pdf.New(pdf.Config[pathTopic]{Store: pdf.DirStore{Dir: dir}, Renderer: paths, Prefix: "paths"}); err != nil {
		t.Errorf("an explicit prefix for an unusable topic: %v", err)
	}
	if err := pdf.Register(nil, good); !errors.Is(err, pdf.ErrInvalidConfig) {
		t.Errorf("nil handlers: %v; want ErrInvalidConfig", err)
	}

	// Every problem is reported, not just the first.
	_, err = pdf.New(pdf.Config[pdf.Invoice]{Store: pdf.DirStore{}, MaxBytes: -1, Prefix: "../x"})
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if ce, ok := errors.AsType[*pdf.ConfigError](e); ok {
			fields = append(fields, ce.Field)
		}
	}
	if want := []string{"Store.Dir", "Renderer", "MaxBytes", "Prefix"}; !slices.Equal(fields, want) {
		t.Errorf("problems %q; want %q", fields, want)
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

// Stored results survive JSON the way the relay saves them; "url" only
// when there is one.
func TestStoredJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   pdf.Stored
		want string
	}{
		{pdf.Stored{Name: "p/y.pdf", Bytes: 12, SHA256: "ab"}, `{"name":"p/y.pdf","bytes":12,"sha256":"ab"}`},
		{pdf.Stored{Name: "p/y.pdf", URL: "https://cdn.example.com/p/y.pdf", Bytes: 12, SHA256: "ab"},
			`{"name":"p/y.pdf","url":"https://cdn.example.com/p/y.pdf","bytes":12,"sha256":"ab"}`},
	} {
		b, err := json.Marshal(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, []byte(tc.want)) {
			t.Errorf("JSON %s; want %s", b, tc.want)
		}
	}
}

// What the entry records — and package progress streams to browsers —
// is the document's name within the store, never the server's path to
// it; with a BaseURL, the store's public URL too. The name reads the
// document back through the store.
func TestResultShowsNoLocalPath(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "https://files.example.com/docs"} {
		dir := t.TempDir()
		store := pdf.DirStore{Dir: dir, BaseURL: base}
		db, ev := startRelay(t, func(h *relay.Handlers) error {
			return pdf.Register(h, invoices(store))
		})
		ctx := context.Background()
		const key = "invoice:path-check"
		res, err := outbox.Enqueue(ctx, db.Pool, sampleInvoice("P-7"), outbox.WithKey(key))
		if err != nil {
			t.Fatal(err)
		}
		ev.Wait(t, res.ID, relay.EventDone)
		e, err := outbox.Get(ctx, db.Pool, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		var fromKey []byte
		if err := db.Pool.QueryRow(ctx, `SELECT result FROM outbox_processed_keys WHERE key = $1`, key).Scan(&fromKey); err != nil {
			t.Fatal(err)
		}
		for where, raw := range map[string][]byte{"entry": e.Result, "processed key": fromKey} {
			if bytes.Contains(raw, []byte(dir)) || bytes.Contains(raw, []byte(filepath.ToSlash(dir))) || bytes.Contains(raw, []byte(os.TempDir())) {
				t.Errorf("BaseURL %q: the %s's result %s shows the store's directory %s", base, where, raw, dir)
			}
			var fields map[string]any
			if err := json.Unmarshal(raw, &fields); err != nil {
				t.Fatal(err)
			}
			for k, v := range fields {
				if s, ok := v.(string); ok && (filepath.IsAbs(s) || strings.HasPrefix(s, "/")) {
					t.Errorf("BaseURL %q: the %s's result has the absolute path %q in %q", base, where, s, k)
				}
			}
		}
		var got pdf.Stored
		if err := json.Unmarshal(e.Result, &got); err != nil {
			t.Fatal(err)
		}
		name := pdf.ObjectName("pdf.invoice", key)
		wantURL := ""
		if base != "" {
			wantURL = base + "/" + name
		}
		if got.Name != name || got.URL != wantURL {
			t.Fatalf("BaseURL %q: result %+v; want name %q, url %q", base, got, name, wantURL)
		}
		f, err := store.Open(got.Name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := io.ReadAll(f)
		_ = f.Close()
		sum := sha256.Sum256(doc)
		if err != nil || int64(len(doc)) != got.Bytes || hex.EncodeToString(sum[:]) != got.SHA256 {
			t.Fatalf("BaseURL %q: reading %s back: %d bytes, %v; want the %d bytes the result describes", base, got.Name, len(doc), err, got.Bytes)
		}
	}
}
