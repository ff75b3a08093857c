package sidecar

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes as the sidecar's configuration file.
// It must never panic; what it refuses must be a *ConfigError, and what it
// accepts must have its defaults filled in and no negative value where
// one has no meaning.
func FuzzLoadConfig(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"listen": "off", "log": {"format": "text", "level": "debug"}}`,
		`{"relay": {"poll_interval": "50ms", "queues": {"default": {"max_workers": 8}}}}`,
		`{"relay": {"poll_interval": 5}}`,
		`{"relay": {"poll_interval": "soon"}}`,
		`{"relay": {"queues": {"default": {"max_workers": -1}}}}`,
		`{"handlers": [{"kind": "webhook", "timeout": "2s", "config": {"endpoints": {}}}]}`,
		`{"handlers": [{"kind": "webhook", "timeout": "-2s"}]}`,
		`{"handlers": [{}]}`,
		`{"handlers": [{"kind": "webhook", "outcome_before_next": true}, {"kind": "pdf", "outcome_before_next": "yes"}]}`,
		`{"schedules": [{"name": "d", "every": "1h", "priority": "high"}]}`,
		`{"unknown": true}`,
		`{"log": {"format": "xml"}}`,
		`[]`,
		`{"listen": ":9090"} {"again": 1}`,
		"",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if cfg.DatabaseURLEnv == "" || cfg.Listen == "" || cfg.Log.Format == "" || cfg.Log.Level == "" {
			t.Fatalf("accepted config without defaults: %+v", cfg)
		}
		for i, h := range cfg.Handlers {
			if h.Kind == "" {
				t.Fatalf("accepted handler %d without a kind", i)
			}
			if h.Timeout < 0 {
				t.Fatalf("accepted handler %d with a negative timeout", i)
			}
		}
		for name, q := range cfg.Relay.Queues {
			if q.MaxWorkers < 0 {
				t.Fatalf("accepted queue %q with negative max_workers", name)
			}
		}
	})
}
