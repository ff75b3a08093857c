// Stand-ins for the reader's own code, which the documentation's Go
// fragments use without declaring it. The checker adds each declaration
// (a type with its methods counts as one) to every fragment that does not
// declare that name itself. Keep the names apart from package names:
// a stand-in named like a package a fragment imports cannot compile.
package prelude

import (
	"context"
	"net/http"

	"github.com/txoutbox/txoutbox/handlers/webhook"
	"github.com/txoutbox/txoutbox/relay"
)

// WelcomeEmail is the payload of the docs' running example.
type WelcomeEmail struct {
	UserID int64  `json:"user_id"`
	Email  string `json:"email"`
}

func (WelcomeEmail) Topic() string { return "email.welcome" }

// Invoice is a payload for a transactional handler.
type Invoice struct {
	OrderID int64 `json:"order_id"`
	Cents   int64 `json:"cents"`
}

func (Invoice) Topic() string { return "billing.invoice" }

// Mailer is the reader's mail client.
type Mailer interface {
	Send(ctx context.Context, to, idempotencyKey string) error
}

var mailer Mailer

// sendEmail is the reader's code that sends an email.
func sendEmail(ctx context.Context, to, idempotencyKey string) error { return nil }

// sendWebhook is a handler function of the reader's.
func sendWebhook(ctx context.Context, e *relay.Entry[webhook.Event]) error { return nil }

// fakeMailer is a test double for examples/testing's signup.Mailer.
type fakeMailer struct{}

func (*fakeMailer) Send(ctx context.Context, to, subject, idempotencyKey string) error { return nil }

// ExportCSV is a payload of docs/observability.md's examples.
type ExportCSV struct {
	ReportID int64 `json:"report_id"`
}

func (ExportCSV) Topic() string { return "reports.export_csv" }

// RenderPage is a payload of docs/observability.md's examples.
type RenderPage struct {
	N int `json:"n"`
}

func (RenderPage) Topic() string { return "reports.render_page" }

// userID is the reader's authentication: who signed the request in.
func userID(r *http.Request) string { return r.Header.Get("X-User") }
