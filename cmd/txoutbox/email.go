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
	cfg := email.Config{
		Host: c.Host, Port: c.Port, Username: c.Username, From: c.From, HeloName: c.HeloName,
		Timeout: time.Duration(c.Timeout), MessageIDDomain: c.MessageIDDomain,
	}
	if c.TLS != "" {
		if err := cfg.TLS.UnmarshalText([]byte(c.TLS)); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	auth, ok := authNames[strings.ToLower(c.Auth)]
	if !ok {
		return fmt.Errorf("auth: unknown mechanism %q", c.Auth)
	}
	cfg.Auth = auth
	if c.PasswordEnv != "" {
		cfg.Password = getenv(c.PasswordEnv)
		if cfg.Password == "" {
			return fmt.Errorf("password_env: environment variable %s is not set", c.PasswordEnv)
		}
	}
	if c.TemplatesDir == "" {
		return fmt.Errorf("templates_dir: required (a directory of name.subject.tmpl, name.txt.tmpl, name.html.tmpl files)")
	}
	if st, err := os.Stat(c.TemplatesDir); err != nil || !st.IsDir() {
		return fmt.Errorf("templates_dir: %q is not a readable directory", c.TemplatesDir)
	}
	cfg.TemplateFS = os.DirFS(c.TemplatesDir)
	return email.Register(h, cfg, opts...)
}
