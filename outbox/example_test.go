package outbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver

	"github.com/txoutbox/txoutbox/migrations"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// WelcomeEmail is the payload of the examples: a Go type that names its
// topic.
type WelcomeEmail struct {
	UserID int64  `json:"user_id"`
	Email  string `json:"email"`
}

// Topic names the handler that sends the email.
func (WelcomeEmail) Topic() string { return "email.welcome" }

// Write a user and the email that welcomes them in one pgx transaction: the
// entry exists if and only if the user does.
func ExampleEnqueue() {
	ctx := context.Background()
	dsn, cleanup, err := exampleDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	tx, err := pool.Begin(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tx.Rollback(ctx) // a no-op once committed

	var userID int64
	err = tx.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id`, "ada@example.com").Scan(&userID)
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := outbox.Enqueue(ctx, tx, WelcomeEmail{UserID: userID, Email: "ada@example.com"},
		outbox.WithKey(fmt.Sprintf("welcome:%d", userID)))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		fmt.Println(err)
		return
	}

	entry, err := outbox.Get(ctx, pool, res.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(entry.Topic, entry.Key, entry.State)
	// Output: email.welcome welcome:1 pending
}

// With database/sql, open the database with the pgx driver and wrap the
// *sql.Tx with outbox.SQL.
func ExampleSQL() {
	ctx := context.Background()
	dsn, cleanup, err := exampleDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tx.Rollback() // a no-op once committed

	var userID int64
	err = tx.QueryRowContext(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id`, "grace@example.com").Scan(&userID)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = outbox.Enqueue(ctx, outbox.SQL(tx), WelcomeEmail{UserID: userID, Email: "grace@example.com"},
		outbox.WithKey(fmt.Sprintf("welcome:%d", userID)))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Commit(); err != nil {
		fmt.Println(err)
		return
	}

	entry, err := outbox.GetByKey(ctx, outbox.SQL(db), "email.welcome", "welcome:1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(entry.Topic, entry.Key, entry.State)
	// Output: email.welcome welcome:1 pending
}

// An idempotency key makes a retried request harmless: the second enqueue
// finds the first entry and writes nothing.
func ExampleWithKey() {
	ctx := context.Background()
	dsn, cleanup, err := exampleDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	msg := WelcomeEmail{UserID: 42, Email: "ada@example.com"}
	for range 2 {
		res, err := outbox.Enqueue(ctx, pool, msg, outbox.WithKey("welcome:42"))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("id %d, duplicate %v\n", res.ID, res.Duplicate)
	}
	// Output:
	// id 1, duplicate false
	// id 1, duplicate true
}

// EnqueueBatch writes many entries in one round trip and reports one result
// per item, in order.
func ExampleEnqueueBatch() {
	ctx := context.Background()
	dsn, cleanup, err := exampleDatabase(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cleanup()

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	results, err := outbox.EnqueueBatch(ctx, pool, []outbox.Item{
		outbox.NewItem(WelcomeEmail{UserID: 1}, outbox.WithKey("welcome:1")),
		outbox.NewItem(WelcomeEmail{UserID: 2}, outbox.WithKey("welcome:2"), outbox.WithQueue("emails")),
		outbox.NewItem(WelcomeEmail{UserID: 1}, outbox.WithKey("welcome:1")), // a repeat
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, r := range results {
		fmt.Printf("item %d: id %d, duplicate %v\n", i, r.ID, r.Duplicate)
	}
	// Output:
	// item 0: id 1, duplicate false
	// item 1: id 2, duplicate false
	// item 2: id 1, duplicate true
}

// exampleDatabase creates a scratch database with txoutbox's schema and a
// users table on the server outboxtest finds for the tests, and returns
// its connection string and a function that drops it. It is plumbing for
// the examples, which have no *testing.T to call outboxtest.New with.
func exampleDatabase(ctx context.Context) (dsn string, cleanup func(), err error) {
	admin, err := outboxtest.ServerURL()
	if err != nil {
		return "", nil, err
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, err
	}
	name := "txoutbox_example_" + strings.ToLower(rand.Text())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		_ = conn.Close(ctx)
		return "", nil, err
	}
	cleanup = func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
		_ = conn.Close(context.Background())
	}

	dbCfg := cfg.Copy()
	dbCfg.Database = name
	db := stdlib.OpenDB(*dbCfg)
	_, err = migrations.Up(ctx, db)
	if err == nil {
		_, err = db.ExecContext(ctx, usersDDL)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}

	if u, perr := url.Parse(admin); perr == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String(), cleanup, nil
	}
	return admin + " dbname=" + name, cleanup, nil
}
