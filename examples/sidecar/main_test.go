package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/sidecar"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// The example's handler credits points once, run through sidecar.Main as
// the binary would.
func TestSidecarExample(t *testing.T) {
	db := outboxtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE loyalty_ledger (customer_id bigint, order_id bigint, points int)`); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Enqueue(ctx, db.Pool, LoyaltyPoints{CustomerID: 7, OrderID: 99, Points: 120}, outbox.WithKey("order:99")); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- sidecar.Main(runCtx, []string{"relay", "--database-url", db.URL, "--listen", "off"}, sidecar.Options{
			Name: "sidecar", Handlers: register, Stdout: &out, Stderr: &out,
		})
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		var points int
		err := db.Pool.QueryRow(ctx, `SELECT coalesce(sum(points), 0) FROM loyalty_ledger WHERE order_id = 99`).Scan(&points)
		if err != nil {
			t.Fatal(err)
		}
		if points == 120 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("points not credited; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, out.String())
	}
}
