package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// An invoice is paid; the billing system learns of it by a signed webhook
// that is sent if and only if the payment committed.
func Example() {
	ctx := context.Background()
	// The server the package's tests use (outboxtest's choice: the
	// configured one, else a throwaway container or local cluster).
	server, err := outboxtest.ServerURL()
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, cleanup, err := scratchdb.Create(ctx, server, "txoutbox_example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	// The receiver: here a local server standing in for billing's endpoint.
	received := make(chan string, 1)
	billing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		received <- fmt.Sprintf("%s %s webhook-id=%s", env.Type, env.Data, r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer billing.Close()

	// The relay side: one line registers the handler.
	h := relay.NewHandlers()
	err = webhook.Register(h, webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			"billing": {URL: billing.URL + "/hooks", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		},
		AllowPrivateNetworks: true, // the example's receiver is on 127.0.0.1; keep false in production
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The producer side: the event commits with the payment, or not at all.
	tx, err := pool.Begin(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... UPDATE invoices SET paid_at = now() WHERE id = 'inv_17' ...
	res, err := outbox.Enqueue(ctx, tx, webhook.Event{
		Endpoint: "billing",
		Type:     "invoice.paid",
		Data:     json.RawMessage(`{"invoice":"inv_17"}`),
	}, outbox.WithKey("invoice.paid:inv_17"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		fmt.Println(err)
		return
	}

	done := make(chan struct{}, 1)
	r, err := relay.New(pool, relay.Config{
		Handlers: h,
		Logger:   slog.New(slog.DiscardHandler),
		Observer: relay.ObserverFunc(func(e relay.Event) {
			if e.EntryID == res.ID && e.Kind == relay.EventDone {
				done <- struct{}{}
			}
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(runCtx) }()
	fmt.Println("received", <-received)
	<-done
	stop()
	<-stopped

	e, err := outbox.Get(ctx, pool, res.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	var result webhook.Result
	_ = json.Unmarshal(e.Result, &result)
	fmt.Println("entry", e.State, "with status", result.Status)
	// Output:
	// received invoice.paid {"invoice":"inv_17"} webhook-id=invoice.paid:inv_17
	// entry done with status 204
}

// New builds the handler without registering it, to wrap it: here to log
// the receivers' refusals and to give webhooks their own attempt timeout.
func ExampleNew() {
	wh, err := webhook.New(webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			"billing": {URL: "https://billing.example.com/hooks", Secrets: []string{os.Getenv("BILLING_WEBHOOK_SECRET")}},
		},
		Timeout: 5 * time.Second,
	})
	if errors.Is(err, webhook.ErrInvalidSecret) {
		fmt.Println("set BILLING_WEBHOOK_SECRET to a whsec_ secret")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	h := relay.NewHandlers()
	relay.Handle(h, func(ctx context.Context, e *relay.Entry[webhook.Event]) error {
		err := wh.Handle(ctx, e)
		var status *webhook.StatusError
		if errors.As(err, &status) {
			slog.WarnContext(ctx, "webhook refused", "endpoint", status.Endpoint,
				"status", status.StatusCode, "entry", e.ID, "attempt", e.Attempt)
		}
		return err
	}, relay.WithTimeout(2*time.Minute))
	// relay.New(pool, relay.Config{Handlers: h, Queues: ...})
}
