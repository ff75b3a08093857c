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
// WithMaxBytes says otherwise: 32 MiB.
const DefaultMaxBytes = 32 << 20

// maxPrefixLen bounds WithPrefix, in bytes.
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
// entry's Result) and decode it with encoding/json.
type Stored struct {
	// Location is where the store put the document, as the BlobStore
	// reports it (for DirStore, the file's absolute path).
	Location string `json:"location"`
	// Name is the object name the document was stored under (ObjectName of
	// the handler's prefix and the entry's key).
	Name string `json:"name"`
	// Bytes is the document's size.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex SHA-256 of the document's bytes.
	SHA256 string `json:"sha256"`
}

// Option configures a handler built by New or Register.
type Option func(*options)

type options struct {
	prefix    *string
	maxBytes  int64
	relayOpts []relay.HandlerOption
	errs      []error
}

// WithPrefix sets the object name prefix: documents are stored as
// ObjectName(prefix, key). By default the prefix is the payload's topic
// (for Invoice, "pdf.invoice"), so document kinds sharing a store never
// collide. The prefix is a slash-separated relative path whose elements use
// only letters, digits, '.', '_' and '-', and do not start with '.'; it may
// be empty, for names without a prefix. Anything else makes New fail.
func WithPrefix(prefix string) Option {
	return func(o *options) {
		if err := checkPrefix(prefix); err != nil {
			o.errs = append(o.errs, err)
			return
		}
		o.prefix = &prefix
	}
}

// WithMaxBytes bounds the size of a rendered document (default
// DefaultMaxBytes). A larger document is not stored, and the entry is
// dead-lettered with ErrTooLarge. n must be positive.
func WithMaxBytes(n int64) Option {
	return func(o *options) {
		if n <= 0 {
			o.errs = append(o.errs, configErr("WithMaxBytes", "must be positive, got %d", n))
			return
		}
		o.maxBytes = n
	}
}

// WithHandlerOptions passes options to relay.Handle when Register registers
// the handler (relay.WithTimeout, relay.WithRetryPolicy, ...). New ignores
// them.
func WithHandlerOptions(opts ...relay.HandlerOption) Option {
	return func(o *options) { o.relayOpts = append(o.relayOpts, opts...) }
}

// Register builds a handler with New and registers it on h for the topic of
// payload type T:
//
//	err := pdf.Register(h, pdf.DirStore{Dir: "/srv/invoices"}, pdf.InvoiceRenderer{})
//
// T is inferred from the renderer's Render method. Register returns New's
// error (a *relay.ConfigError) and registers nothing when the configuration
// is invalid. Errors that relay.Handle collects (a topic registered twice)
// are returned by relay.New, as for any handler.
func Register[T outbox.Message](h *relay.Handlers, store BlobStore, r Renderer[T], opts ...Option) error {
	if h == nil {
		return configErr("Register", "nil *relay.Handlers")
	}
	fn, err := New(store, r, opts...)
	if err != nil {
		return err
	}
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	relay.Handle(h, fn, o.relayOpts...)
	return nil
}

// New returns a handler for payload type T that renders each entry's
// payload with r and stores it with store under ObjectName(prefix, key),
// then records a Stored result with the entry. Register it with
// relay.Handle, or use Register. New returns a *relay.ConfigError
// (matching relay.ErrInvalidConfig) when store or r is nil or an option is
// invalid.
//
// For each attempt the handler:
//
//  1. returns the context's error, without rendering, if it is already done;
//  2. renders the payload into memory (at most the WithMaxBytes limit); a
//     render error, a panic, an empty or non-PDF output and ErrTooLarge are
//     permanent, unless the renderer returned relay.RetryAfter;
//  3. checks the context again, then calls store.Put; store errors are
//     retried, unless the store wrapped them in relay.Permanent;
//  4. reports a Stored result (location, name, size, SHA-256) with
//     Entry.SetResult, so the relay saves it with the entry and its
//     processed key.
//
// Every attempt of an entry uses the same object name, so a retry (or the
// one re-delivery a crash after the store and before the completion can
// cause) overwrites the document instead of adding a second one.
func New[T outbox.Message](store BlobStore, r Renderer[T], opts ...Option) (relay.HandlerFunc[T], error) {
	typ := reflect.TypeFor[T]().String()
	if isNil(store) {
		return nil, configErr("store", "nil BlobStore for %s", typ)
	}
	if isNil(r) {
		return nil, configErr("renderer", "nil Renderer for %s", typ)
	}
	if v, ok := store.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return nil, err
		}
	}
	o := options{maxBytes: DefaultMaxBytes}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if len(o.errs) > 0 {
		return nil, o.errs[0]
	}
	var prefix string
	if o.prefix != nil {
		prefix = *o.prefix
	} else {
		topic, err := topicOf[T](typ)
		if err != nil {
			return nil, err
		}
		if err := checkPrefix(topic); err != nil {
			return nil, configErr("WithPrefix", "the topic %q of %s is not usable as a name prefix; set one with WithPrefix", topic, typ)
		}
		prefix = topic
	}
	h := &handler[T]{store: store, render: r, prefix: prefix, maxBytes: o.maxBytes}
	return h.handle, nil
}

type handler[T outbox.Message] struct {
	store    BlobStore
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
	loc, err := h.store.Put(ctx, name, bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("pdf: storing %s: %w", name, err)
	}
	// The document is stored: that is the effect, so the attempt succeeds
	// even if ctx ended meanwhile (a retry would only store it again).
	sum := sha256.Sum256(doc)
	e.SetResult(Stored{Location: loc, Name: name, Bytes: int64(len(doc)), SHA256: hex.EncodeToString(sum[:])})
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
// systems). With a prefix that WithPrefix accepts, the result never has a
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

// checkPrefix validates a WithPrefix value.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPrefixLen {
		return configErr("WithPrefix", "prefix is %d bytes; at most %d", len(p), maxPrefixLen)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			return configErr("WithPrefix", "prefix %q has an empty element (a leading, trailing or double slash)", p)
		}
		if seg[0] == '.' {
			return configErr("WithPrefix", "prefix %q has an element starting with '.'", p)
		}
		for i := 0; i < len(seg); i++ {
			if !safeByte(seg[i]) {
				return configErr("WithPrefix", "prefix %q has the character %q; use letters, digits, '.', '_', '-' and '/'", p, seg[i])
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
			err = configErr("WithPrefix", "%s.Topic() panicked on the zero value (%v); set a prefix with WithPrefix", typ, p)
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

func configErr(field, format string, args ...any) error {
	return &relay.ConfigError{Field: "pdf." + field, Reason: fmt.Sprintf(format, args...)}
}
