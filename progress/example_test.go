package progress_test

import (
	"context"
	"log"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/progress"
)

// An application's progress endpoint: one Watcher per process, one
// Handler, mounted behind the application's own authentication.
func Example() {
	ctx := context.Background()
	var pool *pgxpool.Pool
	w, err := outbox.NewWatcher(pool, outbox.WatcherConfig{})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = w.Run(ctx) }()

	user := func(r *http.Request) string { return r.Header.Get("X-User-ID") } // your session's user
	h, err := progress.NewHandler(progress.Config{
		Watcher:   w,
		Principal: user, // streams are counted per user
		Authorize: func(r *http.Request, e *outbox.Entry) bool {
			return e.Headers["user_id"] == user(r)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /progress", h) // EventSource("/progress?entry=17")
	_ = http.ListenAndServe("127.0.0.1:8080", mux)
}
