package pdf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// DefaultMaxBytes is the largest rendered document a handler stores unless
// Config.MaxBytes says otherwise: 32 MiB.
const DefaultMaxBytes = 32 << 20

// maxPrefixLen bounds Config.Prefix, in bytes.
const maxPrefixLen = 128

// Renderer renders documents of payload type T as PDF.
//
// Render writes the whole document to w. Rendering should be a function of
// doc alone: the handler treats every error from Render as permanent (the
// entry is dead-lettered at once), because rendering the same payload again
// would fail the same way. A renderer that depends on something that can
// fail for a while (a font or logo fetched over the network, say) returns
// relay.RetryAfter(d, err) to have the entry retried instead. A panic in
// Render is recovered and treated as a permanent error too.
//
// For retries to replace a document with an identical one, Render should
// write the same bytes for the same payload: no current time, no random
// identifiers.
type Renderer[T any] interface {
	Render(w io.Writer, doc T) error
}

// RenderFunc adapts a function to a Renderer.
type RenderFunc[T any] func(w io.Writer, doc T) error

// Render calls f(w, doc).
func (f RenderFunc[T]) Render(w io.Writer, doc T) error { return f(w, doc) }

// Stored is the result a handler records with the entry and its processed
// key when the document is stored: read it back with outbox.Get (the
// entry's Result) and decode it with encoding/json. Its JSON is
//
//	{"name": "pdf.invoice/invoice_2024-0017-3651656b34c22949643746a4bedde69a.pdf",
//	 "url": "https://files.example.com/pdf.invoice/invoice_2024-0017-3651656b34c22949643746a4bedde69a.pdf",
//	 "bytes": 1703, "sha256": "9f2c..."}
//
// with "url" only when the store gives one (see PublicStore). Results can
// reach end users (package progress streams them to browsers), so Stored
// holds only what the handler chose to show: the object's name within the
// store, never where the store keeps it on the server (a DirStore's
// absolute path, a bucket's credentials). Open the document by its name
// through the store (DirStore.Open).
type Stored struct {
	// Name is the object name the document was stored under (ObjectName
	// of the handler's prefix and the entry's key): its key within the
	// store.
	Name string `json:"name"`
	// URL is where the people the document is for can fetch it, as the
	// store's PublicURL gives it; empty (and absent from the JSON) when
	// the store gives none.
	URL string `json:"url,omitempty"`
	// Bytes is the document's size.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the document's bytes.
	SHA256 string `json:"sha256"`
}

// Config configures a handler for payload type T. Store and Renderer are
// required; every other field's zero value is its documented default.
// New validates it and reports every problem, each a *ConfigError.
type Config[T outbox.Message] struct {
	// Store keeps the rendered documents, required: DirStore{Dir: ...}
	// for files under a local directory, or any BlobStore.
	Store BlobStore

	// Renderer renders a payload as PDF, required: InvoiceRenderer{} for
	// Invoice, or a RenderFunc[T].
	Renderer Renderer[T]

	// Prefix is the first part of object names: documents are stored as
	// ObjectName(Prefix, key). Default "": the payload's topic (for
	// Invoice, "pdf.invoice"), so document kinds sharing a store never
	// collide. A prefix is a slash-separated relative path whose elements
	// use only letters, digits, '.', '_' and '-', do not start with '.',
	// and are at most 128 bytes in all.
	Prefix string

	// NoPrefix stores documents under names without a prefix (Prefix must
	// then be empty). Default false.
	NoPrefix bool

	// MaxBytes bounds the size of a rendered document. A larger document
	// is not stored, and the entry is dead-lettered with ErrTooLarge.
	// Default 0: DefaultMaxBytes (32 MiB). Negative is an error.
	MaxBytes int64
}

// Register builds a handler with New and registers it on h for the topic of
// payload type T, with opts (relay.WithTimeout, relay.WithRetryPolicy):
//
//	err := pdf.Register(h, pdf.Config[pdf.Invoice]{
//		Store:    pdf.DirStore{Dir: "/srv/invoices"},
//		Renderer: pdf.InvoiceRenderer{},
//	}, relay.WithTimeout(30*time.Second))
//
// It returns New's error and registers nothing when the configuration is
// invalid. Errors that relay.Handle collects (a topic registered twice)
// are returned by relay.New, as for any handler.
func Register[T outbox.Message](h *relay.Handlers, cfg Config[T], opts ...relay.HandlerOption) error {
	if h == nil {
		return configErr("Handlers", "nil *relay.Handlers")
	}
	fn, err := New(cfg)
	if err != nil {
		return err
	}
	relay.Handle(h, fn, opts...)
	return nil
}

// New validates cfg and returns a handler for payload type T that renders
// each entry's payload with cfg.Renderer and stores it with cfg.Store
// under ObjectName(prefix, key), then records a Stored result with the
// entry. Register it with relay.Handle, or use Register. The error joins
// every problem found, each a *ConfigError matching ErrInvalidConfig: a
// missing Store or Renderer, an invalid Prefix, a negative MaxBytes, a
// DirStore without Dir.
//
// For each attempt the handler:
//
//  1. returns the context's error, without rendering, if it is already done;
//  2. renders the payload into memory (at most MaxBytes); a render error, a
//     panic, an empty or non-PDF output and ErrTooLarge are permanent,
//     unless the renderer returned relay.RetryAfter;
//  3. checks the context again, then calls Store.Put; store errors are
//     retried, unless the store wrapped them in relay.Permanent;
//  4. reports a Stored result (name, the store's public URL if any, size,
//     SHA-256) with Entry.SetResult, so the relay saves it with the entry
//     and its processed key.
//
// Every attempt of an entry uses the same object name, so a retry (or the
// one re-delivery a crash after the store and before the completion can
// cause) overwrites the document instead of adding a second one.
func New[T outbox.Message](cfg Config[T]) (relay.HandlerFunc[T], error) {
	typ := reflect.TypeFor[T]().String()
	var errs []error
	if isNil(cfg.Store) {
		errs = append(errs, configErr("Store", "nil BlobStore for %s; DirStore{Dir: ...} stores files", typ))
	} else if v, ok := cfg.Store.(interface{ validate() []error }); ok {
		errs = append(errs, v.validate()...)
	}
	if isNil(cfg.Renderer) {
		errs = append(errs, configErr("Renderer", "nil Renderer for %s", typ))
	}
	if cfg.MaxBytes < 0 {
		errs = append(errs, configErr("MaxBytes", "negative (%d); 0 is the default, %d bytes", cfg.MaxBytes, DefaultMaxBytes))
	}
	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	prefix := cfg.Prefix
	switch {
	case cfg.NoPrefix && cfg.Prefix != "":
		errs = append(errs, configErr("NoPrefix", "set together with Prefix %q; set one", cfg.Prefix))
	case cfg.NoPrefix:
	case prefix != "":
		if err := checkPrefix(prefix); err != nil {
			errs = append(errs, err)
		}
	default:
		topic, err := topicOf[T](typ)
		if err != nil {
			errs = append(errs, err)
		} else if checkPrefix(topic) != nil {
			errs = append(errs, configErr("Prefix", "empty, and the topic %q of %s is not usable as a name prefix; set one", topic, typ))
		}
		prefix = topic
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	h := &handler[T]{store: cfg.Store, render: cfg.Renderer, prefix: prefix, maxBytes: maxBytes}
	if ps, ok := cfg.Store.(PublicStore); ok {
		h.public = ps
	}
	return h.handle, nil
}

type handler[T outbox.Message] struct {
	store    BlobStore
	public   PublicStore // store, if it gives public URLs
	render   Renderer[T]
	prefix   string
	maxBytes int64
}

func (h *handler[T]) handle(ctx context.Context, e *relay.Entry[T]) error {
	name := ObjectName(h.prefix, e.Key)
	if err := ctxErr(ctx); err != nil {
		return fmt.Errorf("pdf: %s: before rendering: %w", name, err)
	}
	doc, err := h.renderDoc(e.Payload)
	if err != nil {
		return fmt.Errorf("pdf: %s: %w", name, err)
	}
	if err := ctxErr(ctx); err != nil {
		return fmt.Errorf("pdf: %s: after rendering: %w", name, err)
	}
	if err := h.store.Put(ctx, name, bytes.NewReader(doc)); err != nil {
		return fmt.Errorf("pdf: storing %s: %w", name, err)
	}
	// The document is stored: that is the effect, so the attempt succeeds
	// even if ctx ended meanwhile (a retry would only store it again).
	sum := sha256.Sum256(doc)
	res := Stored{Name: name, Bytes: int64(len(doc)), SHA256: hex.EncodeToString(sum[:])}
	if h.public != nil {
		res.URL = h.public.PublicURL(name)
	}
	e.SetResult(res)
	return nil
}

// renderDoc renders doc into memory and classifies failures: permanent
// unless the renderer asked for a retry with relay.RetryAfter.
func (h *handler[T]) renderDoc(doc T) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, relay.Permanent(fmt.Errorf("renderer panicked: %v", p))
		}
	}()
	buf := &limitedBuffer{max: h.maxBytes}
	if err := h.render.Render(buf, doc); err != nil {
		if _, ok := errors.AsType[*relay.RetryAfterError](err); ok {
			return nil, fmt.Errorf("render: %w", err)
		}
		return nil, relay.Permanent(fmt.Errorf("render: %w", err))
	}
	b := buf.buf.Bytes()
	switch {
	case len(b) == 0:
		return nil, relay.Permanent(errors.New("render: the renderer wrote nothing"))
	case !bytes.HasPrefix(b, []byte("%PDF-")):
		return nil, relay.Permanent(errors.New("render: the output is not a PDF (no %PDF- header)"))
	}
	return b, nil
}

// limitedBuffer is a bytes.Buffer that refuses to grow past max.
type limitedBuffer struct {
	buf bytes.Buffer
	max int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if int64(b.buf.Len())+int64(len(p)) > b.max {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, b.max)
	}
	return b.buf.Write(p)
}

// ObjectName returns the name under which a handler with the given prefix
// stores the document of the entry with the given key. It is a function of
// prefix and key alone, so every attempt of an entry (and every relay)
// uses the same name:
//
//	prefix + "/" + slug(key) + "-" + hex(SHA-256(key))[:32] + ".pdf"
//
// where slug keeps the key's letters, digits, '.', '_' and '-' (up to 64
// bytes), replaces any other byte by '_' and drops leading dots. The slug
// keeps names readable; the hash keeps them distinct for keys that differ
// only in replaced characters or in case (on case-insensitive file
// systems). With a prefix that Config.Prefix accepts, the result never has a
// "." or ".." element, a backslash or a leading "/", whatever the key, so
// a key cannot make a name escape the store.
func ObjectName(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	var b strings.Builder
	if prefix != "" {
		b.WriteString(prefix)
		b.WriteByte('/')
	}
	s := slug(key)
	if s != "" {
		b.WriteString(s)
		b.WriteByte('-')
	}
	b.WriteString(hex.EncodeToString(sum[:16]))
	b.WriteString(".pdf")
	return b.String()
}

// maxSlugLen bounds the readable part of an object name, in bytes.
const maxSlugLen = 64

func slug(key string) string {
	b := make([]byte, 0, min(len(key), maxSlugLen))
	for i := 0; i < len(key) && len(b) < maxSlugLen; i++ {
		c := key[i]
		switch {
		case c == '.' && len(b) == 0:
			// no leading dots: "." and ".." are never names, and the
			// dot prefix is DirStore's temporary files'
		case safeByte(c):
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkPrefix validates a Config.Prefix value.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPrefixLen {
		return configErr("Prefix", "%d bytes; at most %d", len(p), maxPrefixLen)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			return configErr("Prefix", "%q has an empty element (a leading, trailing or double slash)", p)
		}
		if seg[0] == '.' {
			return configErr("Prefix", "%q has an element starting with '.'", p)
		}
		for i := 0; i < len(seg); i++ {
			if !safeByte(seg[i]) {
				return configErr("Prefix", "%q has the character %q; use letters, digits, '.', '_', '-' and '/'", p, seg[i])
			}
		}
	}
	return nil
}

// ctxErr returns nil while ctx is live, else its error joined with its
// cause when they differ (relay.ErrHandlerTimeout, relay.ErrLeaseLost...).
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// topicOf returns the topic of T's zero value, or a config error when its
// Topic method panics on it.
func topicOf[T outbox.Message](typ string) (topic string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = configErr("Prefix", "empty, and %s.Topic() panicked on the zero value (%v); set a prefix", typ, p)
		}
	}()
	var zero T
	return zero.Topic(), nil
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
