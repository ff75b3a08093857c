package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/handlers/email"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// emailConfig is the "config" of a {"kind": "email"} handler. The password
// is named by environment variable, never written in the file.
type emailConfig struct {
	Host            string           `json:"host"`
	Port            int              `json:"port"`
	TLS             string           `json:"tls"`
	Username        string           `json:"username"`
	PasswordEnv     string           `json:"password_env"`
	Auth            string           `json:"auth"`
	From            string           `json:"from"`
	HeloName        string           `json:"helo_name"`
	Timeout         sidecar.Duration `json:"timeout"`
	MessageIDDomain string           `json:"message_id_domain"`
	// TemplatesDir holds name.subject.tmpl, name.txt.tmpl and
	// name.html.tmpl files.
	TemplatesDir string `json:"templates_dir"`
}

var authNames = map[string]email.AuthMechanism{
	"": email.AuthAuto, "auto": email.AuthAuto, "plain": email.AuthPlain, "login": email.AuthLogin,
	"cram-md5": email.AuthCRAMMD5, "scram-sha-256": email.AuthSCRAMSHA256, "xoauth2": email.AuthXOAUTH2,
}

func registerEmail(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error {
	var c emailConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
	}
	// Out-of-range numbers are refused here, with the file's names;
	// email.Register would refuse them too, with its own.
	if c.Port < 0 || c.Port > 65535 {
		return &sidecar.ConfigError{Field: "port", Reason: fmt.Sprintf("%d is not a TCP port (0 for the default)", c.Port)}
	}
	if c.Timeout < 0 {
		return &sidecar.ConfigError{Field: "timeout", Reason: fmt.Sprintf("negative (%s)", c.Timeout.D())}
	}
	cfg := email.Config{
		Host: c.Host, Port: c.Port, Username: c.Username, From: c.From, HeloName: c.HeloName,
		Timeout: time.Duration(c.Timeout), MessageIDDomain: c.MessageIDDomain,
	}
	if c.TLS != "" {
		if err := cfg.TLS.UnmarshalText([]byte(c.TLS)); err != nil {
			return &sidecar.ConfigError{Field: "tls", Reason: err.Error()}
		}
	}
	auth, ok := authNames[strings.ToLower(c.Auth)]
	if !ok {
		return &sidecar.ConfigError{Field: "auth", Reason: fmt.Sprintf("unknown mechanism %q", c.Auth)}
	}
	cfg.Auth = auth
	if c.PasswordEnv != "" {
		cfg.Password = getenv(c.PasswordEnv)
		if cfg.Password == "" {
			return &sidecar.ConfigError{Field: "password_env", Reason: fmt.Sprintf("environment variable %s is not set", c.PasswordEnv)}
		}
	}
	if c.TemplatesDir == "" {
		return &sidecar.ConfigError{Field: "templates_dir", Reason: "required (a directory of name.subject.tmpl, name.txt.tmpl, name.html.tmpl files)"}
	}
	if st, err := os.Stat(c.TemplatesDir); err != nil || !st.IsDir() {
		return &sidecar.ConfigError{Field: "templates_dir", Reason: fmt.Sprintf("%q is not a readable directory", c.TemplatesDir)}
	}
	cfg.TemplateFS = os.DirFS(c.TemplatesDir)
	return email.Register(h, cfg, opts...)
}
