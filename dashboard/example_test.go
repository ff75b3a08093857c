package dashboard_test

import (
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/dashboard"
)

// The dashboard mounted in an application's own server, behind Basic auth.
func Example() {
	var pool *pgxpool.Pool // the application's pool
	dash, err := dashboard.New(pool, dashboard.Config{
		Auth: dashboard.BasicAuth("ops", os.Getenv("OUTBOX_UI_PASSWORD")),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/outbox/", http.StripPrefix("/admin/outbox", dash))
	_ = http.ListenAndServe("127.0.0.1:8080", mux)
}

// Behind middleware that already authenticates operators, let every request
// through that it lets through.
func ExampleAuthFunc() {
	var pool *pgxpool.Pool
	dash, err := dashboard.New(pool, dashboard.Config{
		Auth: dashboard.AuthFunc(func(r *http.Request) bool { return r.Header.Get("X-Operator") != "" }),
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = dash
}
