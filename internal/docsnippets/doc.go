// Package docsnippets checks that the Go code blocks of the documentation
// compile. Its test, TestDocSnippets, runs in `go test ./...` (and so in
// CI) on README.md and every docs/*.md.
//
// # The convention
//
// Every fenced code block whose info string is go (```go) is compiled
// against this module and its dependencies, as follows.
//
//   - A block that starts with a package clause is a whole file. It is
//     compiled as it stands: nothing is added and no error is forgiven.
//
//   - Any other block is a fragment, and is completed into a file:
//
//     Imports are added for the packages it names (context, fmt, time,
//     json, pgx, pgxpool, outbox, relay, webhook, email, pdf, outboxtest,
//     and the rest of knownPackages), so fragments leave them out.
//
//     If the fragment parses as top-level declarations (types, functions,
//     variables), those are the file. Otherwise it is a function body,
//     wrapped as
//
//     func _(ctx context.Context, pool *pgxpool.Pool, tx pgx.Tx,
//     db *outboxtest.DB, t *testing.T, h *relay.Handlers, msg outbox.Message,
//     key string, id int64, store pdf.BlobStore, r *http.Request,
//     mux *http.ServeMux, err error) error { { FRAGMENT }; return nil }
//
//     so these names are in scope with these types (a fragment may declare
//     its own, which shadow them: `r, err := relay.New(...)` is fine), and
//     it may `return err`. A body may stop
//     before it uses everything it declares: "declared and not used" is
//     forgiven there, and only there.
//
//     The stand-ins in testdata/prelude.go are added: names that the
//     documentation uses for the reader's own code (WelcomeEmail, Invoice,
//     sendEmail, mailer, ...). A stand-in that the fragment declares itself
//     is left out.
//
//   - An HTML comment on the line before the fence (invisible once
//     rendered) changes this:
//
//     <!-- snippet: package NAME --> makes the block a file of package NAME,
//     compiled together with the page's other blocks marked with the same
//     NAME. The page's other blocks may then use it as a package named NAME
//     (docs/handlers.md's sms.Register is such a package and its test).
//
//     <!-- snippet: skip REASON --> leaves the block out. Use it only for a
//     fragment that cannot be made to compile, and say why.
//
// Blocks with another info string (```sh, ```sql, ```json, ...) are not
// read. A fragment that is Go but not meant to be compiled should rather be
// rewritten into one that is.
//
// The check builds all blocks with one `go build -overlay`, so it writes
// nothing into the repository: the generated packages exist only in the
// overlay, under internal/docsnippets/gen/. Errors are reported at the
// Markdown file and line of the block.
package docsnippets
