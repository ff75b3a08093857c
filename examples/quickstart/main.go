// Command quickstart shows txoutbox end to end in one process: a small web
// application whose request handlers write their rows and their outbox
// entries in one transaction and answer at once, and a relay in the same
// process that does the slow work afterwards with the built-in handlers:
//
//   - POST /signup writes the user row plus three entries: a welcome email
//     (handlers/email, to an SMTP catcher the quickstart starts), a signed
//     webhook to a partner (handlers/webhook, to a receiver the quickstart
//     starts, which answers its first request 503) and a reminder email
//     that is due a few seconds later (outbox.WithDelay).
//   - POST /orders writes the order row plus an invoice PDF entry
//     (handlers/pdf, into a temporary directory).
//
// The quickstart then drives a few requests itself (a signup, the same
// signup again, an order) and prints a timeline: how long each request
// took, and when the work behind it happened.
//
// Run it with:
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -serve   # then keep running, for curl
//
// With DATABASE_URL set (a server where you may CREATE DATABASE), it
// creates a throwaway database there, migrates it, runs, and drops it at
// the end. Without DATABASE_URL it starts a throwaway PostgreSQL server
// first, the way the tests do: a container when a Docker engine answers
// (image postgres:17, or TXOUTBOX_TEST_POSTGRES_IMAGE), else a cluster from
// this machine's PostgreSQL server binaries; it says which, and removes the
// server at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/internal/throwaway"
)

// options are the quickstart's settings.
type options struct {
	// serve keeps the application running after the scripted requests,
	// until ctx is done.
	serve bool
	// reminderDelay is how long after a signup its reminder email is due.
	reminderDelay time.Duration
}

func main() {
	serve := flag.Bool("serve", false, "after the scripted requests, keep the application running for curl until Ctrl-C")
	flag.Parse()
	tclog.SetDefault(tclog.NewNoopLogger()) // no Docker banner in the example's output
	// Ctrl-C ends the run through its context, so the cleanup still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runWithServer(ctx, os.Stdout, os.Getenv("DATABASE_URL"), os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE"),
		options{serve: *serve, reminderDelay: 3 * time.Second})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// runWithServer runs the quickstart on serverURL or, when that is empty, on
// a throwaway server (a container of image, "" meaning postgres:17, or a
// local cluster) that it removes afterwards.
func runWithServer(ctx context.Context, out io.Writer, serverURL, image string, opts options) error {
	tl := newTimeline(out)
	tl.printf("", "txoutbox quickstart: an HTTP application that commits its rows and its outbox entries in one")
	tl.printf("", "transaction, and a relay in the same process that does the slow work afterwards.")
	tl.printf("", "")
	tl.printf("", "setup")
	if serverURL != "" {
		tl.printf("postgres", "using the server in DATABASE_URL (%s)", scratchdb.Redact(serverURL))
		return run(ctx, tl, serverURL, opts)
	}
	tl.printf("postgres", "DATABASE_URL is not set: starting a throwaway PostgreSQL server (a container, else local binaries)")
	// Say which server it used and why it passed over the others, but not
	// testcontainers-go's own progress lines.
	logf := func(format string, args ...any) {
		if msg, ok := strings.CutPrefix(fmt.Sprintf(format, args...), "throwaway: "); ok {
			tl.printf("postgres", "%s", msg)
		}
	}
	srv, err := throwaway.Start(ctx, throwaway.Sources(image), logf)
	if err != nil {
		return fmt.Errorf("%w\nset DATABASE_URL to a server where you may CREATE DATABASE, %s, or %s",
			err, throwaway.HintContainer, throwaway.HintLocal)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: removing the throwaway server:", err)
		}
	}()
	return run(ctx, tl, srv.URL, opts)
}
