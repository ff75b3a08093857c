// Command sidecar is a team's own relay binary: the txoutbox command line
// (relay, migrate, status, dead, ...) with the team's Go handlers added.
// Build it, deploy it next to the application, and run
//
//	sidecar relay --config relay.json
//
// It is the same entry point the txoutbox binary uses, minus the built-in
// handler kinds (add them with sidecar.Options.Kinds if you want them).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// LoyaltyPoints credits points to a customer, exactly once per order.
type LoyaltyPoints struct {
	CustomerID int64 `json:"customer_id"`
	OrderID    int64 `json:"order_id"`
	Points     int   `json:"points"`
}

// Topic names the handler.
func (LoyaltyPoints) Topic() string { return "loyalty.credit" }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := sidecar.Main(ctx, os.Args[1:], sidecar.Options{
		Name:     "sidecar",
		Handlers: register,
	})
	stop()
	os.Exit(code)
}

// register adds this program's handlers to the relay.
func register(h *relay.Handlers) error {
	// A transactional handler: the points and the entry's completion commit
	// together, so a retried or re-delivered entry never credits twice.
	relay.HandleTx(h, func(ctx context.Context, tx pgx.Tx, e *relay.Entry[LoyaltyPoints]) error {
		_, err := tx.Exec(ctx, `INSERT INTO loyalty_ledger (customer_id, order_id, points) VALUES ($1, $2, $3)`,
			e.Payload.CustomerID, e.Payload.OrderID, e.Payload.Points)
		return err
	})
	return nil
}
