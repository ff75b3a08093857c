package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/internal/scratchdb"
	"github.com/txoutbox/txoutbox/relay"
)

// smtpDelay is how long the SMTP catcher takes to accept a message.
const smtpDelay = 300 * time.Millisecond

// run is the whole quickstart on the server at serverURL.
func run(ctx context.Context, tl *timeline, serverURL string, opts options) error {
	pool, dropDB, err := scratchdb.Create(ctx, serverURL, "txoutbox_quickstart")
	if err != nil {
		return fmt.Errorf("%w (set DATABASE_URL to a server where you may CREATE DATABASE)", err)
	}
	defer dropDB()
	if _, err := pool.Exec(ctx, appSchema); err != nil {
		return err
	}
	tl.printf("postgres", "created a throwaway database with txoutbox's tables (migrations.Up) and the app's users and orders")

	// The outside world: a mail provider, a partner, a place for PDFs.
	smtpServer, err := startCatcher(tl, smtpDelay)
	if err != nil {
		return err
	}
	defer smtpServer.Close()
	tl.printf("smtp", "catcher on 127.0.0.1:%d; takes %s per message, like a real mail provider", smtpServer.Port(), smtpDelay)
	partner, err := startPartner(tl)
	if err != nil {
		return err
	}
	defer partner.Close(context.Background())
	tl.printf("partner", "webhook receiver on %s; checks signatures, answers the first request per webhook-id with 503", partner.URL())
	dir, err := os.MkdirTemp("", "txoutbox-quickstart-pdf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store := &fileStore{DirStore: pdf.DirStore{Dir: dir}, tl: tl, written: map[string]time.Duration{}}

	// The relay, with the three built-in handlers pointed at them.
	h := relay.NewHandlers()
	mailer, err := email.New(email.Config{
		Host:     "127.0.0.1",
		Port:     smtpServer.Port(),
		TLS:      email.TLSNone, // a loopback catcher; use TLSMandatory (the default) for a real server
		HeloName: "localhost",
		From:     "Quickstart <hello@quickstart.example>",
		Templates: map[string]email.Template{
			"welcome":  {Subject: "Welcome, {{.name}}", Text: "Hello {{.name}},\n\nyour account is ready.\n"},
			"reminder": {Subject: "Anything we can help with, {{.name}}?", Text: "Hello {{.name}},\n\nyou signed up a moment ago. Questions? Just reply.\n"},
		},
	})
	if err != nil {
		return err
	}
	relay.Handle(h, mailer.Handle)
	err = webhook.Register(h, webhook.Config{
		Endpoints: map[string]webhook.Endpoint{
			"partner": {URL: partner.URL(), Secrets: []string{partner.secret}},
		},
		AllowPrivateNetworks: true, // the receiver is on loopback; keep this off in production (SSRF)
	})
	if err != nil {
		return err
	}
	if err := pdf.Register(h, pdf.Config[pdf.Invoice]{Store: store, Renderer: pdf.InvoiceRenderer{}}); err != nil {
		return err
	}
	r, err := relay.New(pool, relay.Config{
		Handlers: h,
		// Notifications wake the relay within milliseconds of a commit;
		// polling finds entries that become due later (the reminder, the
		// webhook's retry). The default is 1s.
		PollInterval: 100 * time.Millisecond,
		Observer:     relay.ObserverFunc(tl.observe),
		Logger:       tl.logger(),
	})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()
	defer func() {
		stopRelay()
		<-relayDone
	}()
	tl.printf("relay", "running in this process for email.send, webhook.deliver and pdf.invoice (PDFs go to %s)", dir)

	// The application.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	a := &app{pool: pool, tl: tl, reminderDelay: opts.reminderDelay}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	base := "http://" + lis.Addr().String()
	tl.printf("app", "listening on %s", base)

	c := client{tl: tl, base: base}
	tl.printf("", "")
	tl.printf("", "timeline (time since the first request; the client's lines are the HTTP requests)")
	tl.begin()

	// 1. A signup.
	var s1 signupResponse
	status, took1, err := c.post(ctx, "/signup", `{"email":"ada@example.com"}`, &s1)
	if err != nil {
		return err
	}
	signedUp := tl.since()
	tl.printf("client", "  %s in %s: user %d, and in the same transaction %s", status, ms(took1), s1.UserID, list(s1.Queued))

	// 2. The same signup again: a double click, or a client retrying after
	// a timeout.
	var s2 signupResponse
	status, took2, err := c.post(ctx, "/signup", `{"email":"ada@example.com"}`, &s2)
	if err != nil {
		return err
	}
	dups := 0
	for _, q := range s2.Queued {
		if q.Duplicate {
			dups++
		}
	}
	tl.printf("client", "  %s in %s: user %d existed; %d of %d entries were already queued under the same keys, nothing new",
		status, ms(took2), s2.UserID, dups, len(s2.Queued))

	// 3. An order.
	var o orderResponse
	status, took3, err := c.post(ctx, "/orders", fmt.Sprintf(`{"user_id":%d,"item":"Analytical engine, rental","quantity":3,"unit_cents":125000}`, s1.UserID), &o)
	if err != nil {
		return err
	}
	ordered := tl.since()
	tl.printf("client", "  %s in %s: order %d, and in the same transaction #%d invoice PDF (to be stored as %s)", status, ms(took3), o.OrderID, o.Queued.ID, o.PDF)

	// Wait for the background work: every entry done or dead.
	if err := waitIdle(ctx, pool, 60*time.Second); err != nil {
		return err
	}
	finished := tl.since()

	// What happened, checked from the receivers' side and the database.
	var users, orders, done, pending, dead int
	err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders),
		count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state IN ('pending', 'running')),
		count(*) FILTER (WHERE state = 'dead') FROM outbox_entries`).Scan(&users, &orders, &done, &pending, &dead)
	if err != nil {
		return err
	}
	mails := smtpServer.Received()
	welcome, reminder := findMail(mails, mailer.MessageID(fmt.Sprintf("welcome:%d", s1.UserID))), findMail(mails, mailer.MessageID(fmt.Sprintf("reminder:%d", s1.UserID)))
	requests, acted := partner.Stats()
	hookAt, hooked := acted[fmt.Sprintf("user.created:%d", s1.UserID)]
	pdfAt, stored := store.Written()[o.PDF]
	if welcome == nil || reminder == nil || !hooked || !stored || len(mails) != 2 || len(acted) != 1 || dead != 0 {
		return fmt.Errorf("the background work did not end as expected: %d emails, webhook acted=%v, invoice stored=%v, %d dead entries", len(mails), hooked, stored, dead)
	}

	tl.printf("", "")
	tl.printf("", "summary")
	tl.printf("", "  The three requests answered in %s, %s and %s. The work behind them was finished %s after the first",
		ms(took1), ms(took2), ms(took3), ms(finished))
	tl.printf("", "  request, and no request waited for it:")
	tl.printf("", "    welcome email   accepted %s after the signup answered (the catcher takes %s)", ms(welcome.At-signedUp), smtpDelay)
	tl.printf("", "    invoice PDF     stored %s after the order answered", ms(pdfAt-ordered))
	tl.printf("", "    partner webhook delivered %s after the signup answered: a 503 first, then the retry its Retry-After asked for", ms(hookAt-signedUp))
	tl.printf("", "    reminder email  accepted %s after the signup answered (due after outbox.WithDelay(%s), then %s in the catcher)",
		ms(reminder.At-signedUp), opts.reminderDelay, smtpDelay)
	tl.printf("", "  Duplicates: 2 signup requests, 1 user; %d emails for 2 Message-IDs; %d webhook requests for 1 webhook-id, acted on once.",
		len(mails), requests)
	tl.printf("", "  The database: %d user, %d order, %d entries done, %d pending, %d dead.", users, orders, done, pending, dead)

	if !opts.serve {
		return nil
	}
	tl.printf("", "")
	tl.printf("", "serving until Ctrl-C; the timeline goes on here. Try, in another terminal:")
	tl.printf("", `  curl -i %s/signup -d '{"email":"grace@example.com"}'`, base)
	tl.printf("", `  curl -i %s/orders -d '{"user_id":1,"item":"Compiler","quantity":1,"unit_cents":99900}'`, base)
	tl.printf("", `  curl -s %s/outbox`, base)
	tl.printf("", "  ls -R %s", dir)
	<-ctx.Done()
	tl.printf("", "stopping")
	return nil
}

// list says which entries a request queued.
func list(qs []queued) string {
	parts := make([]string, len(qs))
	for i, q := range qs {
		parts[i] = fmt.Sprintf("#%d %s", q.ID, q.What)
	}
	return strings.Join(parts, ", ")
}

func findMail(mails []caught, messageID string) *caught {
	for i := range mails {
		if mails[i].MessageID == messageID {
			return &mails[i]
		}
	}
	return nil
}

// waitIdle waits until no entry is pending or running.
func waitIdle(ctx context.Context, pool *pgxpool.Pool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var busy int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_entries WHERE state IN ('pending', 'running')`).Scan(&busy); err != nil {
			return err
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d entries still pending or running after %s", busy, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// client is the quickstart's HTTP client: it prints each request.
type client struct {
	tl   *timeline
	base string
}

// post sends body to path, decodes the JSON answer into v, and returns the
// answer's status and the time the request took.
func (c client) post(ctx context.Context, path, body string, v any) (status string, took time.Duration, err error) {
	c.tl.printf("client", "POST %s %s", path, body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	took = time.Since(start)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode >= 300 {
		return "", 0, fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(buf.String()))
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return "", 0, errors.Join(fmt.Errorf("POST %s: decoding the answer", path), err)
	}
	return resp.Status, took, nil
}
