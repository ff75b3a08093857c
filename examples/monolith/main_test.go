package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }

// The shop takes two orders, rolls back the one it cannot fill, and the
// relay in the same process does the work of the two that committed.
func TestMonolith(t *testing.T) {
	t.Parallel()
	db := outboxtest.New(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, db.URL); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		`-> 201 Created {"order_id":1}`,
		"-> 409 Conflict not enough stock",
		`-> 201 Created {"order_id":2}`,
		`email to ada@example.com: "Your order 2 × Darjeeling, 250 g, 29.00 EUR" (idempotency key order-confirmation:1)`,
		"29 points for ada@example.com (order 1)",
		"9 points for ada@example.com (order 2), 38 in all",
		"result:  2 orders, 4 entries done, 2 emails sent, 38 loyalty points in all",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "bob@example.com:") {
		t.Error("the rolled-back order sent an email")
	}
}
