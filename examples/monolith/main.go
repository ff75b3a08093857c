// Command monolith is txoutbox in a typical database/sql web application:
// request handlers that use *sql.DB and *sql.Tx (through pgx's stdlib
// driver) enqueue with outbox.SQL(tx), and the relay runs as a goroutine
// of the same process.
//
// The shop takes orders. Placing one takes stock, writes the order, and
// enqueues an order confirmation (a plain handler: an effect outside the
// database) and loyalty points (a transactional handler: an effect in the
// same database, applied exactly once), all in one transaction. An order
// that cannot be filled rolls back, and its entries with it.
//
// Run it with:
//
//	go run ./examples/monolith
//
// It places a few orders itself and prints what happened. Like the
// quickstart, it makes a throwaway database on the server in DATABASE_URL,
// or, without DATABASE_URL, on a throwaway server it starts and removes.
package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
)

func main() {
	tclog.SetDefault(tclog.NewNoopLogger())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := withDatabase(ctx, os.Stdout, os.Getenv("DATABASE_URL"), func(url string) error {
		return run(ctx, os.Stdout, url)
	})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "monolith:", err)
		os.Exit(1)
	}
}

// withDatabase calls fn with the URL of a throwaway database on the server
// at serverURL, or on a throwaway server when serverURL is empty, and
// removes what it made afterwards. (A real application is given its
// database's URL; this is only so the example runs anywhere.)
func withDatabase(ctx context.Context, out io.Writer, serverURL string, fn func(url string) error) error {
	return scratchdb.Run(ctx, out, serverURL, "txoutbox_monolith", func(pool *pgxpool.Pool) error {
		// The server's URL (with its settings), pointed at the new database.
		u, err := url.Parse(pool.Config().ConnString())
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("DATABASE_URL: want a postgres:// URL")
		}
		u.Path = "/" + pool.Config().ConnConfig.Database
		pool.Close() // the example opens its own connections
		return fn(u.String())
	})
}
