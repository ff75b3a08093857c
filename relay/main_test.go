package relay_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/relay"
)

// helperEnv, when set, turns the test binary into a relay process (for the
// multi-process test): it runs a relay against the database URL in the
// variable until SIGTERM.
const helperEnv = "TXOUTBOX_RELAY_HELPER_URL"

func TestMain(m *testing.M) {
	if url := os.Getenv(helperEnv); url != "" {
		if err := helperRelay(url); err != nil {
			fmt.Fprintln(os.Stderr, "helper relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	outboxtest.Main(m)
}

// helperRelay handles ping entries by recording them in the handled table,
// tagged "process", until SIGTERM.
func helperRelay(url string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	h := relay.NewHandlers()
	relay.Handle(h, recordHandled(pool, "process"))
	cfg := fastConfig(h, nil)
	r, err := relay.New(pool, cfg)
	if err != nil {
		return err
	}
	fmt.Println("helper relay ready")
	return r.Run(ctx)
}

// recordHandled returns a handler that inserts the entry id into handled.
func recordHandled(pool *pgxpool.Pool, who string) relay.HandlerFunc[ping] {
	return func(ctx context.Context, e *relay.Entry[ping]) error {
		_, err := pool.Exec(ctx, `INSERT INTO handled (entry_id, relay) VALUES ($1, $2)`, e.ID, who)
		return err
	}
}

// hangGuard bounds waits on conditions polled from the database.
const hangGuard = 2 * time.Minute
