package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/outbox"
)

// This file is the application: request handlers that write their rows
// and their outbox entries in one transaction, and return. They never talk
// to the mail server, the partner or the PDF store themselves.

// appSchema is the application's own tables, next to txoutbox's.
const appSchema = `
CREATE TABLE users (
	id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email text NOT NULL UNIQUE
);
CREATE TABLE orders (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id    bigint NOT NULL REFERENCES users,
	item       text NOT NULL,
	quantity   bigint NOT NULL CHECK (quantity > 0),
	unit_cents bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
)`

type app struct {
	pool          *pgxpool.Pool
	tl            *timeline
	reminderDelay time.Duration
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", a.signup)
	mux.HandleFunc("POST /orders", a.order)
	mux.HandleFunc("GET /outbox", a.entries)
	return mux
}

// queued is one outbox entry a request wrote, or found already there.
type queued struct {
	ID        int64  `json:"id"`
	What      string `json:"what"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

type signupResponse struct {
	UserID  int64    `json:"user_id"`
	Existed bool     `json:"existed,omitempty"`
	Queued  []queued `json:"queued"`
}

// signup creates a user, and in the same transaction enqueues the welcome
// email, the partner's webhook and a reminder. Each entry's key names its
// effect ("welcome:1"), so the same signup again, a double click or a
// client's retry, finds the entries there and queues nothing new.
func (a *app) signup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !strings.Contains(req.Email, "@") {
		http.Error(w, `want {"email": "someone@example.com"}`, http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	var resp signupResponse
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) ON CONFLICT (email) DO NOTHING RETURNING id`,
			req.Email).Scan(&resp.UserID)
		if errors.Is(err, pgx.ErrNoRows) {
			resp.Existed = true
			err = tx.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, req.Email).Scan(&resp.UserID)
		}
		if err != nil {
			return err
		}
		id := resp.UserID
		name, _, _ := strings.Cut(req.Email, "@")
		what := []string{"welcome email", "partner webhook", fmt.Sprintf("reminder email, due in %s", a.reminderDelay)}
		res, err := outbox.EnqueueBatch(ctx, tx, []outbox.Item{
			outbox.NewItem(email.Message{To: []string{req.Email}, Template: "welcome", Data: map[string]any{"name": name}},
				outbox.WithKey(fmt.Sprintf("welcome:%d", id))),
			outbox.NewItem(webhook.Event{Endpoint: "partner", Type: "user.created", Data: json.RawMessage(fmt.Sprintf(`{"user_id":%d}`, id))},
				outbox.WithKey(fmt.Sprintf("user.created:%d", id))),
			outbox.NewItem(email.Message{To: []string{req.Email}, Template: "reminder", Data: map[string]any{"name": name}},
				outbox.WithKey(fmt.Sprintf("reminder:%d", id)), outbox.WithDelay(a.reminderDelay)),
		})
		if err != nil {
			return err
		}
		for i, e := range res {
			resp.Queued = append(resp.Queued, queued{ID: e.ID, What: what[i], Duplicate: e.Duplicate})
			a.tl.describe(e.ID, what[i])
		}
		return nil
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status := http.StatusCreated
	if resp.Existed {
		status = http.StatusOK
	}
	writeJSON(w, status, resp)
}

type orderResponse struct {
	OrderID int64  `json:"order_id"`
	Queued  queued `json:"queued"`
	// PDF is where the invoice will be: its name follows from the entry's
	// key, so it is known before the document exists.
	PDF string `json:"pdf"`
}

// order records an order and, in the same transaction, enqueues its
// invoice PDF.
func (a *app) order(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID    int64  `json:"user_id"`
		Item      string `json:"item"`
		Quantity  int64  `json:"quantity"`
		UnitCents int64  `json:"unit_cents"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Item == "" || req.Quantity <= 0 {
		http.Error(w, `want {"user_id": 1, "item": "...", "quantity": 1, "unit_cents": 1000}`, http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	var resp orderResponse
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		var customer string
		var created time.Time
		err := tx.QueryRow(ctx, `
			INSERT INTO orders (user_id, item, quantity, unit_cents)
			SELECT id, $2, $3, $4 FROM users WHERE id = $1
			RETURNING id, created_at, (SELECT email FROM users WHERE id = $1)`,
			req.UserID, req.Item, req.Quantity, req.UnitCents).Scan(&resp.OrderID, &created, &customer)
		if err != nil {
			return err
		}
		key := fmt.Sprintf("invoice:%d", resp.OrderID)
		res, err := outbox.Enqueue(ctx, tx, pdf.Invoice{
			Number:   fmt.Sprintf("Q-%05d", resp.OrderID),
			Seller:   "Quickstart Ltd\n1 Example Street",
			Customer: customer,
			Currency: "EUR",
			IssuedAt: created.UTC(),
			Lines:    []pdf.Line{{Description: req.Item, Quantity: req.Quantity, UnitCents: req.UnitCents}},
		}, outbox.WithKey(key))
		if err != nil {
			return err
		}
		resp.Queued = queued{ID: res.ID, What: "invoice PDF", Duplicate: res.Duplicate}
		resp.PDF = pdf.ObjectName("pdf.invoice", key)
		a.tl.describe(res.ID, "invoice PDF")
		return nil
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		http.Error(w, "no such user", http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		writeJSON(w, http.StatusCreated, resp)
	}
}

// entries lists the outbox, newest first: the table is a documented
// contract, readable with plain SQL.
func (a *app) entries(w http.ResponseWriter, r *http.Request) {
	rows, err := a.pool.Query(r.Context(), `
		SELECT id, topic, key, state, attempt - attempt_base, run_at, coalesce(last_error, '')
		FROM outbox_entries ORDER BY id DESC LIMIT 100`)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	type entry struct {
		ID        int64     `json:"id"`
		Topic     string    `json:"topic"`
		Key       string    `json:"key"`
		State     string    `json:"state"`
		Attempt   int       `json:"attempt"`
		RunAt     time.Time `json:"run_at"`
		LastError string    `json:"last_error,omitempty"`
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.ID, &e.Topic, &e.Key, &e.State, &e.Attempt, &e.RunAt, &e.LastError)
		return e, err
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
