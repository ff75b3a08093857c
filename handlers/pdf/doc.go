// Package pdf is a txoutbox handler that renders PDF documents from typed
// payloads and stores them in a blob store under a name derived from the
// entry's key, so a retry overwrites the document instead of adding a
// second one. The document's name in the store (and a public URL, when
// the store gives one) is recorded with the entry and its processed key,
// for the application to link to.
//
// # Registering
//
// One call registers invoices, stored as files under a local directory:
//
//	h := relay.NewHandlers()
//	err := pdf.Register(h, pdf.Config[pdf.Invoice]{
//		Store:    pdf.DirStore{Dir: "/srv/documents"},
//		Renderer: pdf.InvoiceRenderer{},
//	}, relay.WithTimeout(30*time.Second)) // relay handler options, as for every handler
//	if err != nil {
//		return err // every problem, each a *pdf.ConfigError: no store, an empty Dir, MaxBytes < 0, ...
//	}
//	r, err := relay.New(pool, relay.Config{Handlers: h})
//
// and the application enqueues an invoice in the transaction that creates
// it, keyed by its business identity:
//
//	_, err := outbox.Enqueue(ctx, tx, pdf.Invoice{
//		Number:   "2024-0017",
//		Customer: "Ada Lovelace\n12 St James's Square\nLondon",
//		Currency: "EUR",
//		IssuedAt: time.Now(),
//		Lines:    []pdf.Line{{Description: "Analytical engine, rental", Quantity: 3, UnitCents: 125000}},
//	}, outbox.WithKey("invoice:2024-0017"))
//
// [New] builds the handler function without registering it.
//
// # The result
//
// Once the entry is done, outbox.Get returns a [Stored] result in the
// entry's Result:
//
//	{"name": "pdf.invoice/invoice_2024-0017-3651656b34c22949643746a4bedde69a.pdf",
//	 "bytes": 1703, "sha256": "9f2c..."}
//
// "name" is the document's key within the store; "url" is added when the
// store gives the document a public URL ([PublicStore]; a [DirStore] with
// BaseURL set does). Results can reach end users — package progress
// streams them to browsers — so they hold only what the handler chose to
// show, never where the server keeps the file: read the document back
// through the store by its name ([DirStore.Open]). The same result is
// saved with the processed key in outbox_processed_keys.result, which
// outlives the entry (see the relay's retention settings). [ObjectName]
// computes the name ahead of time.
//
// # Other documents
//
// Any payload type can be rendered: give it a topic (outbox.Message) and a
// [Renderer], and register it the same way. A renderer is a function of
// the payload alone; go-pdf/fpdf (which [InvoiceRenderer] uses) or any
// other PDF library writes the document to the io.Writer:
//
//	type Receipt struct{ ... }
//	func (Receipt) Topic() string { return "pdf.receipt" }
//
//	err := pdf.Register(h, pdf.Config[Receipt]{
//		Store: store,
//		Renderer: pdf.RenderFunc[Receipt](func(w io.Writer, r Receipt) error {
//			f := fpdf.New("P", "mm", "A5", "")
//			f.SetCreationDate(r.PaidAt) // same payload, same bytes
//			...
//			return f.Output(w)
//		}),
//	})
//
// # Storage
//
// [BlobStore] is one method, Put(ctx, name, reader), which must be all or
// nothing; a store whose documents have a public URL also implements
// [PublicStore]. [DirStore] writes files atomically (a temporary file in
// the same directory, fsync, rename, fsync of the directory), refuses
// names that could leave its directory, opens stored documents by name
// ([DirStore.Open]), and gives them a public URL under its BaseURL when
// one is set. An object store fits behind the same interface.
//
// Names are ObjectName(prefix, key): the prefix (the topic by default, see
// Config.Prefix), a readable slug of the key and a hash of it. They are the
// same for every attempt of an entry, on every relay, which is the PDF
// form of txoutbox's duplicate-safe external effects: the one re-delivery
// that a crash between storing and completing can cause replaces the file
// with an identical one.
//
// # Failures
//
//   - Invalid payloads (a *[ValidationError], such as a negative quantity
//     or an invoice without lines), other render errors, a renderer panic
//     and documents over Config.MaxBytes ([ErrTooLarge]) are permanent: the
//     entry is dead-lettered at once, since rendering it again would fail
//     again. A renderer can ask for a retry with relay.RetryAfter.
//   - Store errors are retried: a full disk, a permission denied or a
//     missing directory is the environment's problem, not the entry's, and
//     the entry goes through once it is fixed (within its attempts; it is
//     dead-lettered after the last, and outbox.Replay brings it back). A
//     store marks failures no retry can fix with relay.Permanent, as
//     DirStore does for a refused name ([ErrInvalidName]).
//   - The context is honoured: the handler does not render or store once
//     it is done, and DirStore stops copying and stores nothing when it
//     ends mid-write. A document that was stored counts as the effect
//     even if the context ends just after.
package pdf
