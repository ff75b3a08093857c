package main

import (
	"encoding/json"
	"errors"

	"github.com/txoutbox/txoutbox/handlers/pdf"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// builtinKinds binds the built-in handlers to the configuration file's
// "kind" names. Each decodes its own "config" object strictly.
func builtinKinds() []sidecar.Kind {
	return []sidecar.Kind{
		{Name: "pdf", Register: registerPDF},
		{Name: "webhook", Register: registerWebhook},
		{Name: "email", Register: registerEmail},
		{Name: "nats", Register: registerNATS},
		{Name: "rabbitmq", Register: registerRabbitMQ},
	}
}

// pdfConfig is the "config" of a {"kind": "pdf"} handler.
type pdfConfig struct {
	// Dir is the directory documents are written to (required).
	Dir string `json:"dir"`
	// Prefix is the sub-directory of each object name (default: the topic).
	Prefix string `json:"prefix"`
	// MaxBytes bounds one rendered document (default 32 MiB; 0 keeps the
	// default, a negative value is an error).
	MaxBytes int64 `json:"max_bytes"`
}

func registerPDF(h *relay.Handlers, raw json.RawMessage, _ func(string) string, opts ...relay.HandlerOption) error {
	var c pdfConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
	}
	if c.Dir == "" {
		return &sidecar.ConfigError{Field: "dir", Reason: "required (the directory documents are written to)"}
	}
	// Every value goes to pdf.New, which refuses what is invalid (a
	// negative max_bytes, a bad prefix) with a *pdf.ConfigError; it is
	// reported under the file's name for the field.
	err := pdf.Register(h, pdf.Config[pdf.Invoice]{
		Store:    pdf.DirStore{Dir: c.Dir},
		Renderer: pdf.InvoiceRenderer{},
		Prefix:   c.Prefix,
		MaxBytes: c.MaxBytes,
	}, opts...)
	if ce, ok := errors.AsType[*pdf.ConfigError](err); ok {
		return &sidecar.ConfigError{Field: pdfField(ce.Field), Reason: ce.Reason}
	}
	return err
}

// pdfField names a pdf.Config field as the file spells it.
func pdfField(name string) string {
	switch name {
	case "Store":
		return "dir"
	case "Prefix":
		return "prefix"
	case "MaxBytes":
		return "max_bytes"
	}
	return name
}
