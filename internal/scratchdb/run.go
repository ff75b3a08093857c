package scratchdb

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/throwaway"
)

// Run calls fn with a pool on a throwaway, migrated database named
// prefix_<random> on the server at serverURL — or, when serverURL is
// empty, on a throwaway server (a container, else local binaries) that it
// announces on out — and removes what it made afterwards. The runnable
// examples use it so that they run anywhere.
func Run(ctx context.Context, out io.Writer, serverURL, prefix string, fn func(*pgxpool.Pool) error) error {
	if serverURL == "" {
		fmt.Fprintln(out, "DATABASE_URL is not set: starting a throwaway PostgreSQL server")
		srv, err := throwaway.Start(ctx, throwaway.Sources(os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE")), nil)
		if err != nil {
			return fmt.Errorf("%w\nset DATABASE_URL to a server where you may CREATE DATABASE, %s, or %s",
				err, throwaway.HintContainer, throwaway.HintLocal)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = srv.Close(ctx)
		}()
		serverURL = srv.URL
	}
	pool, drop, err := Create(ctx, serverURL, prefix)
	if err != nil {
		return err
	}
	defer drop()
	return fn(pool)
}
