package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// FileConfig is the sidecar's configuration file (JSON). Unknown fields are
// errors, so a typo never silently falls back to a default. Secrets are not
// written in the file: handler configurations name environment variables.
type FileConfig struct {
	// DatabaseURLEnv names the environment variable holding the database
	// URL. Default "DATABASE_URL". The --database-url flag wins over both.
	DatabaseURLEnv string `json:"database_url_env"`
	// Listen is the address of the HTTP server for /healthz, /readyz and
	// /metrics. Default ":9090"; "off" disables it.
	Listen string `json:"listen"`
	// Log selects the log format ("json" or "text", default "json") and
	// level ("debug", "info", "warn", "error", default "info").
	Log LogConfig `json:"log"`
	// Migrate applies pending migrations before the relay starts.
	Migrate bool `json:"migrate"`
	// Relay holds the relay settings; zero values take relay.Config's
	// defaults.
	Relay RelayConfig `json:"relay"`
	// Handlers binds built-in handler kinds to their settings.
	Handlers []HandlerConfig `json:"handlers"`
	// Schedules declares recurring entries for the configured handlers'
	// topics, run by the relay command (see docs/schedules.md).
	Schedules []ScheduleConfig `json:"schedules"`
	// UI serves the operator dashboard under /ui/; off by default.
	UI UIConfig `json:"ui"`
}

// LogConfig selects how the sidecar logs.
type LogConfig struct {
	Format string `json:"format"`
	Level  string `json:"level"`
}

// RelayConfig mirrors relay.Config's settings in the file.
type RelayConfig struct {
	Queues                map[string]QueueConfig `json:"queues"`
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

// QueueConfig mirrors relay.QueueConfig.
type QueueConfig struct {
	MaxWorkers int `json:"max_workers"`
}

// HandlerConfig binds one built-in handler kind.
type HandlerConfig struct {
	// Kind names the handler kind, e.g. "webhook", "email", "pdf".
	Kind string `json:"kind"`
	// Timeout overrides relay.handler_timeout for this handler.
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

// HandlerOptions returns the relay handler options that h's settings ask
// for, to pass to the kind's Register.
func (h HandlerConfig) HandlerOptions() []relay.HandlerOption {
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
type Duration time.Duration

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ConfigError reports an invalid configuration, naming the field.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return "config: " + e.Err.Error()
	}
	return fmt.Sprintf("config: %s: %v", e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads and validates a configuration file. An empty path gives
// the defaults (no built-in handlers).
func LoadConfig(path string) (*FileConfig, error) {
	cfg := &FileConfig{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, &ConfigError{Err: err}
		}
		if err := DecodeStrict(raw, cfg); err != nil {
			field := fieldOf(err)
			if field == "" {
				field = badDurationField(raw)
			}
			field = indexHandlerField(raw, field)
			return nil, &ConfigError{Field: field, Err: err}
		}
	}
	if cfg.DatabaseURLEnv == "" {
		cfg.DatabaseURLEnv = "DATABASE_URL"
	}
	if cfg.Listen == "" {
		cfg.Listen = ":9090"
	}
	switch cfg.Log.Format {
	case "":
		cfg.Log.Format = "json"
	case "json", "text":
	default:
		return nil, &ConfigError{Field: "log.format", Err: fmt.Errorf("%q is not json or text", cfg.Log.Format)}
	}
	switch cfg.Log.Level {
	case "":
		cfg.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return nil, &ConfigError{Field: "log.level", Err: fmt.Errorf("%q is not debug, info, warn or error", cfg.Log.Level)}
	}
	for i, h := range cfg.Handlers {
		if h.Kind == "" {
			return nil, &ConfigError{Field: fmt.Sprintf("handlers[%d].kind", i), Err: errors.New("missing")}
		}
	}
	if err := cfg.UI.validate(cfg.Listen); err != nil {
		return nil, err
	}
	return cfg, nil
}

// DecodeStrict decodes JSON into v, refusing unknown fields and trailing
// data. Handler kinds use it for their own settings.
func DecodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// fieldOf extracts the field name from encoding/json's errors.
func fieldOf(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return strings.Trim(msg[i+len("unknown field "):], `"`)
	}
	return ""
}

// relayConfig turns the file's relay section into a relay.Config.
func (c RelayConfig) relayConfig() relay.Config {
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

// indexHandlerField turns encoding/json's "handlers.x" into "handlers[i].x",
// naming the first handler whose settings do not decode.
func indexHandlerField(raw []byte, field string) string {
	rest, ok := strings.CutPrefix(field, "handlers.")
	if !ok {
		return field
	}
	var top struct {
		Handlers []json.RawMessage `json:"handlers"`
	}
	if json.Unmarshal(raw, &top) != nil {
		return field
	}
	for i, h := range top.Handlers {
		var hc HandlerConfig
		if json.Unmarshal(h, &hc) != nil {
			return fmt.Sprintf("handlers[%d].%s", i, rest)
		}
	}
	return field
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// badDurationField finds the duration setting that failed to parse, since
// encoding/json does not name the field of a custom unmarshaler's error.
func badDurationField(raw []byte) string {
	var top struct {
		Relay    map[string]json.RawMessage   `json:"relay"`
		Handlers []map[string]json.RawMessage `json:"handlers"`
		UI       map[string]json.RawMessage   `json:"ui"`
	}
	if json.Unmarshal(raw, &top) != nil {
		return ""
	}
	bad := func(v json.RawMessage) bool {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return true
		}
		_, err := time.ParseDuration(s)
		return err != nil
	}
	keys := make([]string, 0, len(top.Relay))
	for k := range top.Relay {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasSuffix(k, "_interval") || strings.HasSuffix(k, "_duration") ||
			strings.HasSuffix(k, "_timeout") || strings.HasSuffix(k, "_retention") {
			if bad(top.Relay[k]) {
				return "relay." + k
			}
		}
	}
	for i, h := range top.Handlers {
		if v, ok := h["timeout"]; ok && bad(v) {
			return fmt.Sprintf("handlers[%d].timeout", i)
		}
	}
	for _, k := range []string{"window", "refresh"} {
		if v, ok := top.UI[k]; ok && bad(v) {
			return "ui." + k
		}
	}
	return ""
}
