package pdf_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/handlertest"
	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// The conformance suite, against invoices stored in a real directory
// through a store whose failures the suite switches on and off.
func TestConformance(t *testing.T) {
	handlertest.Run(t, func(t *testing.T) handlertest.Harness {
		store := newTestStore(pdf.DirStore{Dir: t.TempDir()})
		return handlertest.Harness{
			Register: func(h *relay.Handlers) {
				if err := pdf.Register(h, invoices(store)); err != nil {
					t.Fatalf("pdf.Register: %v", err)
				}
			},
			Enqueue: func(ctx context.Context, pool *pgxpool.Pool, key string) (int64, error) {
				res, err := outbox.Enqueue(ctx, pool, sampleInvoice("conformance"), outbox.WithKey(key))
				return res.ID, err
			},
			Effects: func(key string) int {
				return store.effects(pdf.ObjectName("pdf.invoice", key))
			},
			SetMode: store.setMode,
		}
	})
}
