// Package email is txoutbox's built-in handler for email over SMTP: a
// [Message] enqueued in the producer's transaction is rendered from a named
// template and delivered to an SMTP server (through
// github.com/wneessen/go-mail), with a Message-ID derived from the entry's
// idempotency key.
//
// # Sending an email
//
// Register the handler on the relay's registry, once:
//
//	err := email.Register(handlers, email.Config{
//		Host:       "smtp.example.com", // STARTTLS on port 587 unless told otherwise
//		Username:   "apikey",
//		Password:   os.Getenv("SMTP_PASSWORD"),
//		From:       "Acme <noreply@acme.example>",
//		TemplateFS: os.DirFS("templates"),
//	})
//
// and enqueue a Message (topic "email.send") in the transaction that makes
// the email necessary, with a key that names the email's business identity:
//
//	_, err := outbox.Enqueue(ctx, tx, email.Message{
//		To:       []string{"Ada Lovelace <ada@example.com>"},
//		Template: "welcome",
//		Data:     map[string]any{"name": "Ada"},
//	}, outbox.WithKey("welcome:user-42"))
//
// The email is sent if and only if the transaction commits, and the key
// makes enqueueing it twice one entry (see package outbox). Producers in
// other languages insert the same row with plain SQL: topic 'email.send',
// payload {"to": [...], "template": "welcome", "data": {...}}.
//
// # Templates
//
// A [Template] has a subject (text/template), a text body (text/template)
// and an HTML body (html/template, which escapes the data it inserts); it
// needs the subject and at least one body. Both bodies make a
// multipart/alternative message. Templates come from Config.Templates (Go
// values) and Config.TemplateFS (files name.subject.tmpl, name.txt.tmpl and
// name.html.tmpl), and are parsed once, by [New]: a template that does not
// parse is a configuration error, not a dead-lettered email. The Message's
// Data is the templates' dot; a key the data lacks fails the message rather
// than print "<no value>" to a customer. [Handler.Render] renders a message
// without sending it, for previews and template tests.
//
// # Delivery, the Message-ID and duplicates
//
// Each attempt opens a connection, secures it as Config.TLS says,
// authenticates if Config.Username is set, sends the message and quits.
// The message's Message-ID is [Handler.MessageID] of the entry's key,
// <txoutbox.HEX@DOMAIN>: the same for every attempt, whatever the key's
// characters. Handle returns nil — and only then does the relay record the
// entry's processed key and mark it done — once the server has accepted the
// message (its 250 reply to the message's data); what fails after that (the
// QUIT) does not undo the delivery. The relay records a [Result] with the
// Message-ID and the server's reply, read back with outbox.Get.
//
// SMTP has no idempotency key, so one duplicate remains possible: if the
// connection drops after the server has taken the message but before its
// reply arrives, or the relay crashes between the reply and recording the
// completion, the next attempt sends the message again. The copy has the
// same Message-ID, which lets mail clients and archives recognise it (many
// show one of the two) and lets a receiving system that deduplicates by
// Message-ID drop it. Once the entry is done, its processed key stops any
// later entry with the same key from sending it again.
//
// # Errors
//
// What a retry cannot fix dead-letters the entry at once (the handler
// wraps it in relay.Permanent); everything else is retried by the relay's
// retry policy:
//
//   - permanent: an invalid Message ([ErrInvalidMessage]: no or too many
//     recipients, an [*AddressError] for an address that does not parse); an
//     unknown template ([ErrUnknownTemplate]); a template that fails to
//     render ([*TemplateError]); any 5xx reply ([*SMTPError] with Temporary
//     false), at any stage — a refused recipient (550), refused content
//     (554);
//   - permanent, as a configuration problem: a configuration that does not
//     fit the server fails the attempt once with a [*ConfigError]
//     (matching [ErrInvalidConfig]) that names the setting to change,
//     instead of being retried until the entry's attempts run out. These
//     are: AUTH refused because the session is not encrypted (the server
//     offers AUTH only over TLS, or the handler will not send a PLAIN or
//     LOGIN password in clear — typically TLSOpportunistic against a server
//     without STARTTLS; field TLS), a server requiring TLS to authenticate
//     (538, or 530 asking for STARTTLS; field TLS), an AUTH mechanism the
//     server does not offer or finds too weak (534; field Auth), a server
//     offering no AUTH at all while Username is set (field Username, or TLS
//     when the session is in clear), refused credentials (535; field
//     Password), and a server requiring authentication without a Username
//     (530; field Username). The *ConfigError wraps the *SMTPError when the
//     server replied. Fix the configuration, then outbox.Replay the dead
//     entries;
//   - retried: a 4xx reply ([*SMTPError] with Temporary true); and every
//     failure without a reply: no connection, a dropped connection, a TLS
//     failure (including a server without STARTTLS under TLSMandatory,
//     which may also be a STARTTLS-stripping attacker on the path),
//     Config.Timeout, or the attempt's context ending (the relay's timeout,
//     a lost lease, shutdown).
//
// With several recipients, one refused recipient fails the whole message:
// it is sent to all of them or to none.
//
// # Cancellation and timeouts
//
// The attempt's context and Config.Timeout (default 30s) bound the whole
// exchange: when either ends, the handler closes the connection, which
// interrupts whatever the client was waiting for (a connect, a TLS
// handshake, a reply that never comes), and Handle returns at once.
//
// # Connection security
//
// Config.TLS is [TLSMandatory] by default: STARTTLS, with the server's
// certificate verified against Config.Host, and no delivery to a server
// that does not offer it. [TLSImplicit] speaks TLS from the start (port
// 465); [TLSOpportunistic] uses STARTTLS when offered; [TLSNone] is for a
// relay on loopback. Credentials are sent with the strongest mechanism the
// server offers (Config.Auth), and PLAIN or LOGIN only over TLS or to a
// loopback host.
//
// # Limits
//
// At most [MaxRecipients] recipients per message, [MaxRenderedBytes] per
// rendered part, one message per connection; the payload itself is bounded
// by the producer's limit (see package outbox).
package email
