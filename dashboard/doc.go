// Package dashboard is the operator's view of the outbox: an http.Handler
// of server-rendered pages (Go templates embedded in the binary, one style
// sheet, no JavaScript, no build step) that shows, per topic and queue, the
// depth, the age of the oldest due entry, throughput and the failed-attempt
// rate over the last minutes; the running entries with their leases; the
// dead entries with their errors; and that lets an operator retry one dead
// entry, retry every dead entry of a topic, or discard one.
//
// Mount it anywhere with http.StripPrefix, behind an [Auth]:
//
//	dash, err := dashboard.New(pool, dashboard.Config{
//		Auth: dashboard.BasicAuth("ops", os.Getenv("OUTBOX_UI_PASSWORD")),
//	})
//	if err != nil { ... }
//	mux.Handle("/admin/outbox/", http.StripPrefix("/admin/outbox", dash))
//
// The txoutbox sidecar serves it under /ui/ when its configuration enables
// "ui" (docs/sidecar.md).
//
// # Security
//
// Every request passes Config.Auth first (401 otherwise). Actions are POST
// only and refused with 403 unless they come from the dashboard's own pages:
// net/http's CrossOriginProtection rejects cross-origin browser requests,
// and a double-submit token (a SameSite=Strict cookie repeated in each
// form) must match. Responses forbid framing and scripts
// (Content-Security-Policy, X-Frame-Options). The message an action leaves
// on the next page is signed with the browser's CSRF token and good for a
// minute, so a crafted link cannot make the page say anything.
//
// # Cost
//
// A page view runs four statements, each through the partial indexes the
// relay itself uses; done entries are read only for the chosen window.
// See docs/observability.md.
package dashboard
