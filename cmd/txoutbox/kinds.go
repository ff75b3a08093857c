package main

import (
	"encoding/json"
	"fmt"

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
	if c.MaxBytes < 0 {
		return &sidecar.ConfigError{Field: "max_bytes", Reason: fmt.Sprintf("negative (%d)", c.MaxBytes)}
	}
	var po []pdf.Option
	if c.Prefix != "" {
		po = append(po, pdf.WithPrefix(c.Prefix))
	}
	if c.MaxBytes > 0 {
		po = append(po, pdf.WithMaxBytes(c.MaxBytes))
	}
	po = append(po, pdf.WithHandlerOptions(opts...))
	return pdf.Register(h, pdf.DirStore{Dir: c.Dir}, pdf.InvoiceRenderer{}, po...)
}
