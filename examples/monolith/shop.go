package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/txoutbox/txoutbox/outbox"
)

// The application: plain database/sql, as it was before txoutbox. The only
// additions are the two payload types and the outbox.EnqueueBatch call in
// placeOrder.

// schema is the shop's own tables.
const schema = `
CREATE TABLE products (
	sku   text PRIMARY KEY,
	name  text NOT NULL,
	cents bigint NOT NULL,
	stock int NOT NULL CHECK (stock >= 0)
);
CREATE TABLE orders (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer text NOT NULL,
	sku      text NOT NULL REFERENCES products,
	quantity int NOT NULL CHECK (quantity > 0),
	cents    bigint NOT NULL
);
CREATE TABLE loyalty_points (
	customer text PRIMARY KEY,
	points   bigint NOT NULL
);
INSERT INTO products VALUES ('tea', 'Darjeeling, 250 g', 1450, 8), ('mug', 'Mug, stoneware', 900, 3);`

// OrderConfirmation asks for a confirmation email.
type OrderConfirmation struct {
	OrderID  int64  `json:"order_id"`
	Customer string `json:"customer"`
	Summary  string `json:"summary"`
}

// Topic names the handler.
func (OrderConfirmation) Topic() string { return "shop.order_confirmation" }

// LoyaltyPoints credits points for an order.
type LoyaltyPoints struct {
	OrderID  int64  `json:"order_id"`
	Customer string `json:"customer"`
	Points   int64  `json:"points"`
}

// Topic names the handler.
func (LoyaltyPoints) Topic() string { return "shop.loyalty_points" }

// shop serves the HTTP API on a *sql.DB.
type shop struct {
	db *sql.DB
}

func (s *shop) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", s.placeOrder)
	return mux
}

type orderRequest struct {
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// errOutOfStock rolls an order back.
var errOutOfStock = errors.New("not enough stock")

// placeOrder takes stock, writes the order and enqueues its confirmation
// and its loyalty points, in one database/sql transaction.
func (s *shop) placeOrder(w http.ResponseWriter, r *http.Request) {
	var req orderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Customer == "" || req.Quantity <= 0 {
		http.Error(w, `want {"customer": "...", "sku": "...", "quantity": 1}`, http.StatusBadRequest)
		return
	}
	id, err := s.order(r.Context(), req)
	switch {
	case errors.Is(err, errOutOfStock):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order_id":%d}`+"\n", id)
	}
}

func (s *shop) order(ctx context.Context, req orderRequest) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() // a no-op after Commit

	var name string
	var cents int64
	err = tx.QueryRowContext(ctx, `
		UPDATE products SET stock = stock - $2 WHERE sku = $1 AND stock >= $2
		RETURNING name, cents * $2`, req.SKU, req.Quantity).Scan(&name, &cents)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errOutOfStock // rolled back: no order, no entries
	}
	if err != nil {
		return 0, err
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO orders (customer, sku, quantity, cents) VALUES ($1, $2, $3, $4) RETURNING id`,
		req.Customer, req.SKU, req.Quantity, cents).Scan(&id)
	if err != nil {
		return 0, err
	}

	// The outbox entries, in the same *sql.Tx: outbox.SQL adapts it.
	// The keys name the effects, so a retried request cannot queue them
	// twice; the ordering key credits one customer's points in order.
	_, err = outbox.EnqueueBatch(ctx, outbox.SQL(tx), []outbox.Item{
		outbox.NewItem(OrderConfirmation{
			OrderID:  id,
			Customer: req.Customer,
			Summary:  fmt.Sprintf("%d × %s, %d.%02d EUR", req.Quantity, name, cents/100, cents%100),
		}, outbox.WithKey(fmt.Sprintf("order-confirmation:%d", id))),
		outbox.NewItem(LoyaltyPoints{OrderID: id, Customer: req.Customer, Points: cents / 100},
			outbox.WithKey(fmt.Sprintf("loyalty:%d", id)),
			outbox.WithOrderingKey("customer:"+req.Customer)),
	})
	if err != nil {
		return 0, err
	}
	return id, tx.Commit()
}
