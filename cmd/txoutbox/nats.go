package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	natsio "github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/handlers/nats"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// natsConfig is the "config" of a {"kind": "nats"} handler. Credentials
// are named by environment variable (or, for a credentials file, by its
// path), never written in the file. Zero values take nats.Config's
// defaults.
type natsConfig struct {
	// URL is the server, or comma-separated servers (required).
	URL string `json:"url"`
	// Topics are the outbox topics to publish (at least one).
	Topics []string `json:"topics"`
	// Subject is the subject template (default "{{.Topic}}").
	Subject string `json:"subject"`
	// Stream, when set, is the stream every message must land in.
	Stream string `json:"stream"`
	// CheckStream makes the relay command check at start that JetStream
	// answers and that Stream (when set) exists, and exit 2 otherwise.
	CheckStream bool `json:"check_stream"`
	// AckTimeout bounds the wait for one publish ack (default 5s).
	AckTimeout sidecar.Duration `json:"ack_timeout"`
	// TokenEnv names the variable holding an authentication token.
	TokenEnv string `json:"token_env"`
	// User and PasswordEnv: user name, and the variable holding its
	// password.
	User        string `json:"user"`
	PasswordEnv string `json:"password_env"`
	// CredsFile is the path of a NATS credentials file (JWT and NKey
	// seed); the file holds the secret, the configuration its path.
	CredsFile string `json:"creds_file"`
	// Name is the connection's name as the server shows it (default
	// "txoutbox").
	Name string `json:"name"`
}

// natsCheckTimeout bounds check_stream at start.
const natsCheckTimeout = 10 * time.Second

func registerNATS(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error {
	var c natsConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
	}
	bad := func(field, format string, args ...any) error {
		return &sidecar.ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if c.URL == "" {
		return bad("url", "required (the NATS server, e.g. nats://127.0.0.1:4222)")
	}
	if c.AckTimeout < 0 {
		return bad("ack_timeout", "negative (%s)", c.AckTimeout.D())
	}
	var options []natsio.Option
	if c.Name != "" {
		options = append(options, natsio.Name(c.Name))
	}
	methods := 0
	if c.TokenEnv != "" {
		methods++
		v := getenv(c.TokenEnv)
		if v == "" {
			return bad("token_env", "environment variable %s is not set", c.TokenEnv)
		}
		options = append(options, natsio.Token(v))
	}
	switch {
	case c.User != "" && c.PasswordEnv == "":
		return bad("password_env", "name the environment variable holding the password of user %q", c.User)
	case c.User == "" && c.PasswordEnv != "":
		return bad("user", "password_env is set, but no user")
	case c.User != "":
		methods++
		v := getenv(c.PasswordEnv)
		if v == "" {
			return bad("password_env", "environment variable %s is not set", c.PasswordEnv)
		}
		options = append(options, natsio.UserInfo(c.User, v))
	}
	if c.CredsFile != "" {
		methods++
		options = append(options, natsio.UserCredentials(c.CredsFile))
	}
	if methods > 1 {
		return bad("token_env", "set one of token_env, user/password_env and creds_file")
	}
	pub, err := nats.Register(h, nats.Config{
		URL:        c.URL,
		Options:    options,
		Topics:     c.Topics,
		Subject:    c.Subject,
		Stream:     c.Stream,
		AckTimeout: time.Duration(c.AckTimeout),
	}, opts...)
	if err != nil {
		return natsConfigError(err)
	}
	if c.CheckStream {
		ctx, cancel := context.WithTimeout(context.Background(), natsCheckTimeout)
		defer cancel()
		if err := pub.CheckStream(ctx); err != nil {
			pub.Close()
			field := "check_stream"
			if errors.Is(err, nats.ErrNoStream) {
				field = "stream"
			}
			return bad(field, "%v", err)
		}
	}
	// The connection lives as long as the process: the relay command
	// publishes on it until it exits.
	return nil
}

// natsConfigError reports the first of nats.Register's configuration
// problems under the file's name for the field.
func natsConfigError(err error) error {
	ce, ok := errors.AsType[*nats.ConfigError](err)
	if !ok {
		return err
	}
	field := ce.Field
	switch {
	case field == "URL":
		field = "url"
	case field == "Subject":
		field = "subject"
	case field == "Stream":
		field = "stream"
	case field == "AckTimeout":
		field = "ack_timeout"
	case field == "Topics":
		field = "topics"
	case len(field) > len("Topics[") && field[:len("Topics[")] == "Topics[":
		field = "topics" + field[len("Topics"):]
	}
	reason := ce.Reason
	if ce.Err != nil {
		reason = fmt.Sprintf("%s: %s", ce.Err, ce.Reason)
	}
	return &sidecar.ConfigError{Field: field, Reason: reason}
}
