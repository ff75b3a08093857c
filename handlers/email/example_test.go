package email_test

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Register the handler on the relay, then enqueue messages in the
// transactions that make them necessary.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}

	// Relay side: one line registers the handler for topic "email.send".
	handlers := relay.NewHandlers()
	err = email.Register(handlers, email.Config{
		Host:     "smtp.example.com", // STARTTLS on port 587 by default
		Username: "apikey",
		Password: os.Getenv("SMTP_PASSWORD"),
		From:     "Acme <noreply@acme.example>",
		// welcome.subject.tmpl, welcome.txt.tmpl, welcome.html.tmpl, ...
		TemplateFS: os.DirFS("templates"),
	})
	if err != nil {
		panic(err) // an *email.ConfigError per problem
	}
	r, err := relay.New(pool, relay.Config{Handlers: handlers})
	if err != nil {
		panic(err)
	}
	go func() { _ = r.Run(ctx) }()

	// Producer side: the email is sent if and only if the signup commits.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, email) VALUES ($1, $2)`, 42, "ada@example.com"); err != nil {
			return err
		}
		_, err := outbox.Enqueue(ctx, tx, email.Message{
			To:       []string{"Ada Lovelace <ada@example.com>"},
			Template: "welcome",
			Data:     map[string]any{"name": "Ada"},
		}, outbox.WithKey("welcome:user-42")) // Message-ID derives from it
		return err
	})
	if err != nil {
		panic(err)
	}
}

func ExampleHandler_Render() {
	h, err := email.New(email.Config{
		Host: "smtp.example.com",
		From: "noreply@acme.example",
		Templates: map[string]email.Template{
			"receipt": {
				Subject: "Your receipt for order {{.order}}",
				Text:    "Thank you, {{.name}}. You paid {{.total}}.",
				HTML:    "<p>Thank you, {{.name}}. You paid <b>{{.total}}</b>.</p>",
			},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := h.Render(email.Message{
		To:       []string{"ada@example.com"},
		Template: "receipt",
		Data:     map[string]any{"order": "A-17", "name": "Ada & Co", "total": "€12.50"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Subject)
	fmt.Println(r.Text)
	fmt.Println(r.HTML)
	// Output:
	// Your receipt for order A-17
	// Thank you, Ada & Co. You paid €12.50.
	// <p>Thank you, Ada &amp; Co. You paid <b>€12.50</b>.</p>
}

func ExampleHandler_MessageID() {
	h, err := email.New(email.Config{
		Host:      "smtp.example.com",
		From:      "noreply@acme.example",
		Templates: map[string]email.Template{"t": {Subject: "s", Text: "t"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(h.MessageID("welcome:user-42"))
	fmt.Println(h.MessageID("welcome:user 42 (odd key) <x@y>"))
	// Output:
	// <txoutbox.26be879e99a926ae2aeefca8f7463ebc@acme.example>
	// <txoutbox.7d68216b74aee4eecb49208906890ab6@acme.example>
}
