package email

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/mail"
)

// Topic is the topic of Message entries.
const Topic = "email.send"

// MaxRecipients bounds Message.To. A message with more recipients is
// refused as invalid (relay.Permanent); send several messages instead.
const MaxRecipients = 100

// Message is the payload of an email entry: who gets it, which template
// renders it, and the data the template is rendered with. Enqueue it in
// the transaction that makes the email necessary:
//
//	_, err := outbox.Enqueue(ctx, tx, email.Message{
//		To:       []string{"Ada Lovelace <ada@example.com>"},
//		Template: "welcome",
//		Data:     map[string]any{"name": "Ada"},
//	}, outbox.WithKey("welcome:user-42"))
//
// The subject and bodies come from the template (see Template); the sender
// from Config.From. Its JSON form, for producers that write the outbox
// table with plain SQL, is {"to": [...], "template": "...", "data": {...}}.
type Message struct {
	// To lists the recipients, one RFC 5322 address each: a bare address
	// ("ada@example.com") or one with a display name ("Ada
	// <ada@example.com>"). One message goes to all of them, each seeing the
	// others in the To header. At least one; at most MaxRecipients.
	To []string `json:"to"`

	// Template names one of the handler's templates.
	Template string `json:"template"`

	// Data is what the template renders: it is the template's dot, so
	// {{.name}} prints Data["name"]. The handler decodes it from the
	// entry's JSON with numbers as json.Number, which print exactly as
	// written (12345678, not 1.2345678e+07); use {{.n.Int64}} or
	// {{.n.Float64}} where a template needs the number's value.
	Data map[string]any `json:"data,omitempty"`
}

// Topic returns Topic ("email.send"). It is what makes Message an
// outbox.Message.
func (Message) Topic() string { return Topic }

// Validate reports what makes m unsendable whatever the server and the
// templates: no recipients, too many, an address that does not parse, no
// template name. The error matches ErrInvalidMessage. Producers may call it
// before enqueueing; the handler calls it before sending, and dead-letters
// the entry when it fails. Whether the template exists is only known to
// the handler.
func (m Message) Validate() error {
	_, err := m.parse()
	return err
}

// parse checks m and returns its parsed recipients.
func (m Message) parse() ([]*mail.Address, error) {
	switch {
	case m.Template == "":
		return nil, fmt.Errorf("%w: no template name", ErrInvalidMessage)
	case len(m.To) == 0:
		return nil, fmt.Errorf("%w: no recipients", ErrInvalidMessage)
	case len(m.To) > MaxRecipients:
		return nil, fmt.Errorf("%w: %d recipients, over the limit of %d", ErrInvalidMessage, len(m.To), MaxRecipients)
	}
	out := make([]*mail.Address, 0, len(m.To))
	for _, s := range m.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, &AddressError{Address: s, Err: err}
		}
		out = append(out, a)
	}
	return out, nil
}

// UnmarshalJSON decodes m from its JSON form, with the numbers in Data as
// json.Number.
func (m *Message) UnmarshalJSON(b []byte) error {
	var raw struct {
		To       []string        `json:"to"`
		Template string          `json:"template"`
		Data     json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var data map[string]any
	if len(raw.Data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw.Data))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return fmt.Errorf("email: data: %w", err)
		}
	}
	*m = Message{To: raw.To, Template: raw.Template, Data: data}
	return nil
}

// Result is what the handler records with a delivered entry's processed
// key (read it back with outbox.Get or outbox.GetByKey, field Result).
type Result struct {
	// MessageID is the Message-ID header the message was sent with,
	// angle brackets included.
	MessageID string `json:"message_id"`
	// Response is the server's reply to the message, which often names its
	// queue id (e.g. "2.0.0 Ok: queued as 4F2A1C"); at most 512 bytes.
	Response string `json:"response,omitempty"`
}
