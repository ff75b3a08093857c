package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/txoutbox/handlers/rabbitmq"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/sidecar"
)

// rabbitmqConfig is the "config" of a {"kind": "rabbitmq"} handler. The
// broker's URL holds a password, so the file names the environment
// variable that holds it. Zero values take rabbitmq.Config's defaults.
type rabbitmqConfig struct {
	// URLEnv names the environment variable holding the AMQP URI
	// (required).
	URLEnv string `json:"url_env"`
	// Topics are the topics whose entries are published (at least one).
	Topics []string `json:"topics"`
	// Exchange is the exchange published to (default "", the default
	// exchange).
	Exchange string `json:"exchange"`
	// RoutingKey is the routing key template (default "{{.Topic}}").
	RoutingKey string `json:"routing_key"`
	// ConfirmTimeout bounds the wait for a publisher confirm (default 10s).
	ConfirmTimeout sidecar.Duration `json:"confirm_timeout"`
	// Mandatory publishes with the mandatory flag, so that a message no
	// binding routes is returned and its entry dead-lettered (default
	// true).
	Mandatory *bool `json:"mandatory"`
	// RetryUnroutable retries returned messages instead (default false).
	RetryUnroutable bool `json:"retry_unroutable"`
	// MaxChannels bounds the publishes in flight (default 32).
	MaxChannels int `json:"max_channels"`
	// AppID is the messages' app-id (default "txoutbox").
	AppID string `json:"app_id"`
}

func registerRabbitMQ(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error {
	var c rabbitmqConfig
	if err := sidecar.DecodeStrict(raw, &c); err != nil {
		return err
	}
	switch {
	case c.URLEnv == "":
		return &sidecar.ConfigError{Field: "url_env", Reason: "name the environment variable that holds the AMQP URI (amqp://user:password@host:5672/vhost)"}
	case getenv(c.URLEnv) == "":
		return &sidecar.ConfigError{Field: "url_env", Reason: fmt.Sprintf("environment variable %s is not set", c.URLEnv)}
	case len(c.Topics) == 0:
		return &sidecar.ConfigError{Field: "topics", Reason: "name at least one topic whose entries are published"}
	case c.ConfirmTimeout < 0:
		return &sidecar.ConfigError{Field: "confirm_timeout", Reason: fmt.Sprintf("negative (%s)", c.ConfirmTimeout.D())}
	}
	for i, t := range c.Topics {
		if t == "" {
			return &sidecar.ConfigError{Field: fmt.Sprintf("topics[%d]", i), Reason: "empty"}
		}
	}
	pub, err := rabbitmq.New(rabbitmq.Config{
		URL:             getenv(c.URLEnv),
		Exchange:        c.Exchange,
		RoutingKey:      c.RoutingKey,
		ConfirmTimeout:  time.Duration(c.ConfirmTimeout),
		AllowUnroutable: c.Mandatory != nil && !*c.Mandatory,
		RetryUnroutable: c.RetryUnroutable,
		MaxChannels:     c.MaxChannels,
		AppID:           c.AppID,
	})
	if err != nil {
		// Each problem under the file's name for its field; the first is
		// reported (the URL's, for example, without the URL).
		var ce *rabbitmq.ConfigError
		if errors.As(err, &ce) {
			return &sidecar.ConfigError{Field: rabbitmqField(ce.Field, c.URLEnv), Reason: ce.Reason}
		}
		return err
	}
	// The publisher connects on the first publish, and its connection
	// ends with the process.
	return rabbitmq.Register(h, pub, c.Topics, opts...)
}

// rabbitmqField names a rabbitmq.Config field as the file spells it.
func rabbitmqField(name, urlEnv string) string {
	switch name {
	case "URL":
		return "url_env (" + urlEnv + ")"
	case "RoutingKey":
		return "routing_key"
	case "ConfirmTimeout":
		return "confirm_timeout"
	case "MaxChannels":
		return "max_channels"
	case "AppID":
		return "app_id"
	case "Exchange":
		return "exchange"
	}
	return name
}
