package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// defaultListen is the address of the relay's HTTP endpoints unless the
// file's "listen" or --listen says otherwise: loopback only, since
// /metrics and /readyz answer without credentials and name the database.
// Containers whose probes and scrapers come from outside set
// "0.0.0.0:9090" (see docs/sidecar.md).
const defaultListen = "127.0.0.1:9090"

// fileConfig is the sidecar's configuration file (JSON). Unknown fields are
// errors, so a typo never silently falls back to a default. Secrets are not
// written in the file: settings named *_env name environment variables.
// A zero value, like an absent field, takes the default; a negative value
// is an error unless the field gives it a meaning.
type fileConfig struct {
	// DatabaseURLEnv names the environment variable holding the database
	// URL. Default "DATABASE_URL". The --database-url flag wins over both.
	DatabaseURLEnv string `json:"database_url_env"`
	// Listen is the address of the HTTP server for /healthz, /readyz and
	// /metrics. Default defaultListen (127.0.0.1:9090); "off" disables it.
	Listen string `json:"listen"`
	// Log selects the log format ("json" or "text", default "json") and
	// level ("debug", "info", "warn", "error", default "info").
	Log logConfig `json:"log"`
	// Migrate applies pending migrations before the relay starts.
	Migrate bool `json:"migrate"`
	// Relay holds the relay settings; zero values take relay.Config's
	// defaults.
	Relay relaySettings `json:"relay"`
	// Handlers binds built-in handler kinds to their settings.
	Handlers []handlerConfig `json:"handlers"`
	// Schedules declares recurring entries for the configured handlers'
	// topics, run by the relay command (see docs/schedules.md).
	Schedules []scheduleConfig `json:"schedules"`
	// UI serves the operator dashboard under /ui/; off by default.
	UI uiConfig `json:"ui"`
}

// logConfig selects how the sidecar logs.
type logConfig struct {
	Format string `json:"format"`
	Level  string `json:"level"`
}

// relaySettings mirrors relay.Config's settings in the file: each field
// has relay.Config's name, so that relay's errors map back to the file's
// names (relayField).
type relaySettings struct {
	Queues                map[string]queueConfig `json:"queues"`
	ClaimBatchSize        int                    `json:"claim_batch_size"`
	CompleteBatchSize     int                    `json:"complete_batch_size"`
	PollInterval          Duration               `json:"poll_interval"`
	DisableListen         bool                   `json:"disable_listen"`
	LeaseDuration         Duration               `json:"lease_duration"`
	HeartbeatInterval     Duration               `json:"heartbeat_interval"`
	RescueInterval        Duration               `json:"rescue_interval"`
	HandlerTimeout        Duration               `json:"handler_timeout"`
	ShutdownTimeout       Duration               `json:"shutdown_timeout"`
	RetentionInterval     Duration               `json:"retention_interval"`
	DoneRetention         Duration               `json:"done_retention"`
	DeadRetention         Duration               `json:"dead_retention"`
	ProcessedKeyRetention Duration               `json:"processed_key_retention"`
	RetentionBatchSize    int                    `json:"retention_batch_size"`
	VacuumThreshold       int                    `json:"vacuum_threshold"`
	MaxPayloadBytes       int                    `json:"max_payload_bytes"`
	OrderingBlockOnDead   bool                   `json:"ordering_block_on_dead"`
	ID                    string                 `json:"id"`
}

// queueConfig mirrors relay.QueueConfig.
type queueConfig struct {
	MaxWorkers int `json:"max_workers"`
}

// handlerConfig binds one built-in handler kind.
type handlerConfig struct {
	// Kind names the handler kind, e.g. "webhook", "email", "pdf".
	Kind string `json:"kind"`
	// Timeout overrides relay.handler_timeout for this handler; zero
	// keeps it, a negative value is an error.
	Timeout Duration `json:"timeout"`
	// OutcomeBeforeNext makes each worker of this handler wait until an
	// attempt's outcome is committed before it takes its next entry
	// (relay.WithOutcomeBeforeNext). A crash then repeats at most one
	// finished effect per worker of the handler's queue, at the cost of a
	// commit's latency per entry in each worker. Default false.
	OutcomeBeforeNext bool `json:"outcome_before_next"`
	// Config is the kind's own settings, decoded by the kind.
	Config json.RawMessage `json:"config"`
}

// handlerOptions returns the relay handler options that h's settings ask
// for, to pass to the kind's Register.
func (h handlerConfig) handlerOptions() []relay.HandlerOption {
	var opts []relay.HandlerOption
	if h.Timeout > 0 {
		opts = append(opts, relay.WithTimeout(h.Timeout.D()))
	}
	if h.OutcomeBeforeNext {
		opts = append(opts, relay.WithOutcomeBeforeNext())
	}
	return opts
}

// Duration is a time.Duration written as a string such as "1.5s" or "24h".
// Handler kinds use it for their own settings.
type Duration time.Duration

// durationType is Duration's type, for decoding errors.
var durationType = reflect.TypeFor[Duration]()

// UnmarshalJSON parses a Go duration string. Anything else is a
// *json.UnmarshalTypeError, which encoding/json completes with the
// field's path, so that the error names the setting.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if !bytes.HasPrefix(b, []byte(`"`)) || json.Unmarshal(b, &s) != nil {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string " + string(b), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// jsonKind names the kind of the JSON value b, as encoding/json's errors
// do: "number 5", "bool", "object".
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	case '"':
		return "string"
	}
	return "number " + string(b)
}

// loadConfig reads and validates a configuration file. An empty path gives
// the defaults (no built-in handlers). Every error is a *ConfigError.
func loadConfig(path string) (*fileConfig, error) {
	cfg := &fileConfig{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, configErr("", "%v", err)
		}
		if err := decodeStrict(raw, cfg); err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				ce.Field = indexField(raw, ce.Field)
			}
			return nil, err
		}
	}
	if cfg.DatabaseURLEnv == "" {
		cfg.DatabaseURLEnv = "DATABASE_URL"
	}
	if cfg.Listen == "" {
		cfg.Listen = defaultListen
	}
	switch cfg.Log.Format {
	case "":
		cfg.Log.Format = "json"
	case "json", "text":
	default:
		return nil, configErr("log.format", "%q is not json or text", cfg.Log.Format)
	}
	switch cfg.Log.Level {
	case "":
		cfg.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return nil, configErr("log.level", "%q is not debug, info, warn or error", cfg.Log.Level)
	}
	names := make([]string, 0, len(cfg.Relay.Queues))
	for name := range cfg.Relay.Queues {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if n := cfg.Relay.Queues[name].MaxWorkers; n < 0 {
			return nil, configErr("relay.queues."+name+".max_workers", "negative (%d)", n)
		}
	}
	for i, h := range cfg.Handlers {
		if h.Kind == "" {
			return nil, configErr(fmt.Sprintf("handlers[%d].kind", i), "missing")
		}
		if h.Timeout < 0 {
			return nil, configErr(fmt.Sprintf("handlers[%d].timeout", i), "negative (%s)", h.Timeout.D())
		}
	}
	if err := cfg.UI.validate(cfg.Listen); err != nil {
		return nil, err
	}
	return cfg, nil
}

// DecodeStrict decodes JSON into v, refusing unknown fields and trailing
// data. Handler kinds use it for their own settings. An error is a
// *ConfigError naming the field, as far as encoding/json tells it (the
// path of a type error, without array indexes or map keys; the name of an
// unknown field).
func DecodeStrict(raw []byte, v any) error {
	return decodeStrict(raw, v)
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return configErr("", "unexpected data after the JSON object")
	}
	return nil
}

// decodeError turns encoding/json's error into a *ConfigError naming the
// field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return configErr(te.Field, "want %s, got %s", typeName(te.Type), te.Value)
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return configErr(strings.Trim(msg[i+len("unknown field "):], `"`), "unknown field")
	}
	return configErr("", "%v", err)
}

// typeName says what a value of type t is written as, for messages.
func typeName(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	if t == durationType {
		return `a duration string such as "30s"`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// toRelay turns the file's relay section into a relay.Config.
func (c relaySettings) toRelay() relay.Config {
	rc := relay.Config{
		ClaimBatchSize:        c.ClaimBatchSize,
		CompleteBatchSize:     c.CompleteBatchSize,
		PollInterval:          time.Duration(c.PollInterval),
		DisableListen:         c.DisableListen,
		LeaseDuration:         time.Duration(c.LeaseDuration),
		HeartbeatInterval:     time.Duration(c.HeartbeatInterval),
		RescueInterval:        time.Duration(c.RescueInterval),
		HandlerTimeout:        time.Duration(c.HandlerTimeout),
		ShutdownTimeout:       time.Duration(c.ShutdownTimeout),
		RetentionInterval:     time.Duration(c.RetentionInterval),
		DoneRetention:         time.Duration(c.DoneRetention),
		DeadRetention:         time.Duration(c.DeadRetention),
		ProcessedKeyRetention: time.Duration(c.ProcessedKeyRetention),
		RetentionBatchSize:    c.RetentionBatchSize,
		VacuumThreshold:       c.VacuumThreshold,
		MaxPayloadBytes:       c.MaxPayloadBytes,
		ID:                    c.ID,
	}
	if c.OrderingBlockOnDead {
		rc.OrderingDeadPolicy = relay.OrderingBlockOnDead
	}
	if c.Queues != nil {
		rc.Queues = make(map[string]relay.QueueConfig, len(c.Queues))
		for name, q := range c.Queues {
			rc.Queues[name] = relay.QueueConfig{MaxWorkers: q.MaxWorkers}
		}
	}
	return rc
}

// relayError turns an error of relay.Config.Validate into a *ConfigError
// naming the file's field: relay.lease_duration for LeaseDuration.
// Registration errors of the handlers (a topic bound twice) name
// "handlers".
func relayError(err error) error {
	var rce *relay.ConfigError
	if !errors.As(err, &rce) {
		return configErr("relay", "%v", err)
	}
	if rce.Field == "handler" || rce.Field == "Handlers" {
		return configErr("handlers", "%v", err)
	}
	field := "relay"
	if f, ok := reflect.TypeFor[relaySettings]().FieldByName(rce.Field); ok {
		field += "." + strings.Split(f.Tag.Get("json"), ",")[0]
	}
	return configErr(field, "%s", rce.Reason)
}

// indexField turns encoding/json's "handlers.x" into "handlers[i].x"
// (and the same for "schedules"), naming the first element that does not
// decode.
func indexField(raw []byte, field string) string {
	for _, list := range []struct {
		name string
		try  func(json.RawMessage) error
	}{
		{"handlers", func(m json.RawMessage) error { var v handlerConfig; return json.Unmarshal(m, &v) }},
		{"schedules", func(m json.RawMessage) error { var v scheduleConfig; return json.Unmarshal(m, &v) }},
	} {
		rest, ok := strings.CutPrefix(field, list.name+".")
		if !ok {
			continue
		}
		var top map[string]json.RawMessage
		var elems []json.RawMessage
		if json.Unmarshal(raw, &top) != nil || json.Unmarshal(top[list.name], &elems) != nil {
			return field
		}
		for i, e := range elems {
			if list.try(e) != nil {
				return fmt.Sprintf("%s[%d].%s", list.name, i, rest)
			}
		}
	}
	return field
}
