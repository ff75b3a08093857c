package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"
)

// Topic is the topic of every entry the scenarios write.
const Topic = "bench.noop"

// The relay's defaults, as relay.Config documents them. The bench reports
// the effective values, and the raw scenario uses them to issue the
// relay's statements the way the relay issues them.
const (
	RelayDefaultWorkers       = 100              // QueueConfig.MaxWorkers
	RelayDefaultClaimBatch    = 100              // Config.ClaimBatchSize
	RelayDefaultCompleteBatch = 500              // Config.CompleteBatchSize
	RelayDefaultLease         = 30 * time.Second // Config.LeaseDuration
)

// Limits on Config values. The relay's own limits bound Workers,
// ClaimBatch and CompleteBatch.
const (
	maxEntries   = 100_000_000
	maxRate      = 1_000_000
	maxProducers = 1000
	minDuration  = 100 * time.Millisecond
	maxDuration  = 24 * time.Hour
	maxOffered   = 100_000_000 // Rate × Duration: the steady scenario keeps two timestamps per entry
	maxProcesses = 64
	minPhase     = time.Second
	maxPhase     = 24 * time.Hour
)

// Config says how big the scenarios are. Start from [DefaultConfig];
// [New] validates it.
type Config struct {
	// Entries is the backlog the drain and raw scenarios write and empty.
	// Default 100,000; 1–100,000,000.
	Entries int
	// Rate is the steady scenario's offered load in transactions (one
	// entry each) per second, shared by the producers. Default 1,000;
	// above 0, at most 1,000,000.
	Rate float64
	// Producers is the number of producer goroutines of the steady and
	// pressure scenarios, each on its own connection. Default 16; 1–1,000.
	Producers int
	// Duration is how long the steady scenario offers load and about how
	// long the enqueue scenario measures. Default 10s; 100ms–24h.
	Duration time.Duration
	// Workers sets the relay's MaxWorkers for the default queue (and the
	// raw scenario's in-flight bound). 0, the default, keeps the relay's
	// default (100); otherwise 1–10,000.
	Workers int
	// ClaimBatch sets the relay's ClaimBatchSize. 0, the default, keeps
	// the relay's default (100); otherwise 1–1,000.
	ClaimBatch int
	// CompleteBatch sets the relay's CompleteBatchSize. 0, the default,
	// keeps the relay's default (500); otherwise 1–10,000.
	CompleteBatch int
	// Backlog, when positive, makes the steady scenario first write and
	// drain this many entries, so that it measures a table that has just
	// emptied a large backlog. Default 0; at most 100,000,000.
	Backlog int
	// ChosenKeys makes the drain and raw backlogs carry keys chosen by the
	// producer (as with outbox.WithKey or a plain SQL insert): the relay
	// then probes and records a processed key per entry. By default their
	// keys are generated, as outbox.Enqueue without WithKey writes them.
	ChosenKeys bool
	// Processes, when positive, makes the drain scenario run its relays
	// in this many child processes instead of in the bench process: each
	// runs the executable (os.Executable) with the hidden subcommand
	// RelayProcessCommand, which must call [RunRelayProcess], and one
	// relay with the settings above. The other scenarios ignore it.
	// Default 0; at most 64.
	Processes int
	// PressureRate is the pressure scenario's offered load in
	// transactions (one entry each) per second, shared by the Producers.
	// It is separate from Rate so that the defaults run steady at 1,000
	// and pressure at 500 a second. Default 500; above 0, at most
	// 1,000,000; with PhaseDuration it must offer at least one entry per
	// phase.
	PressureRate float64
	// PhaseDuration is the length of each of the pressure scenario's five
	// phases. Default 2m; 1s–24h.
	PhaseDuration time.Duration
	// Existing says the database is not the bench's own: clean only rows
	// of Topic instead of truncating the outbox tables, and remove them
	// again in Close.
	Existing bool
	// Logger receives progress at Info level; the relays the scenarios run
	// log to it at Warn level and above. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration `txoutbox bench` runs without
// flags.
func DefaultConfig() Config {
	return Config{
		Entries:   100_000,
		Rate:      1000,
		Producers: 16,
		Duration:  10 * time.Second,

		PressureRate:  500,
		PhaseDuration: 2 * time.Minute,
	}
}

// ErrInvalidConfig is matched (errors.Is) by every *ConfigError.
var ErrInvalidConfig = errors.New("bench: invalid configuration")

// ConfigError names the Config field that is out of range.
type ConfigError struct {
	// Field is the Config field's name, such as "Entries".
	Field string
	// Reason says what is wrong, with the value.
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("bench: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate returns nil or a *ConfigError for the first field out of range.
func (c Config) Validate() error {
	intRange := func(field string, v, lo, hi int) error {
		if v < lo || v > hi {
			return configErr(field, "must be %d–%d, got %d", lo, hi, v)
		}
		return nil
	}
	optional := func(field string, v, hi int) error {
		if v != 0 && (v < 1 || v > hi) {
			return configErr(field, "must be 0 (the relay's default) or 1–%d, got %d", hi, v)
		}
		return nil
	}
	for _, err := range []error{
		intRange("Entries", c.Entries, 1, maxEntries),
		intRange("Producers", c.Producers, 1, maxProducers),
		optional("Workers", c.Workers, 10_000),
		optional("ClaimBatch", c.ClaimBatch, 1000),
		optional("CompleteBatch", c.CompleteBatch, 10_000),
		intRange("Backlog", c.Backlog, 0, maxEntries),
		intRange("Processes", c.Processes, 0, maxProcesses),
	} {
		if err != nil {
			return err
		}
	}
	if math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > maxRate {
		return configErr("Rate", "must be above 0 and at most %d per second, got %v", maxRate, c.Rate)
	}
	if c.Duration < minDuration || c.Duration > maxDuration {
		return configErr("Duration", "must be %s–%s, got %s", minDuration, maxDuration, c.Duration)
	}
	offered := c.Rate * c.Duration.Seconds()
	if math.Round(offered) < 1 {
		return configErr("Rate", "%v per second for %s offers no entry", c.Rate, c.Duration)
	}
	if offered > maxOffered {
		return configErr("Rate", "%v per second for %s offers more than %d entries", c.Rate, c.Duration, maxOffered)
	}
	if c.PhaseDuration < minPhase || c.PhaseDuration > maxPhase {
		return configErr("PhaseDuration", "must be %s–%s, got %s", minPhase, maxPhase, c.PhaseDuration)
	}
	if math.IsNaN(c.PressureRate) || c.PressureRate <= 0 || c.PressureRate > maxRate {
		return configErr("PressureRate", "must be above 0 and at most %d per second, got %v", maxRate, c.PressureRate)
	}
	perPhase := c.PressureRate * c.PhaseDuration.Seconds()
	if math.Round(perPhase) < 1 {
		return configErr("PressureRate", "%v per second for phases of %s offers no entry in a phase", c.PressureRate, c.PhaseDuration)
	}
	if perPhase*pressurePhaseCount > maxOffered {
		return configErr("PressureRate", "%v per second for %d phases of %s offers more than %d entries",
			c.PressureRate, pressurePhaseCount, c.PhaseDuration, maxOffered)
	}
	return nil
}

// Effective is the relay configuration the scenarios run with, defaults
// filled in.
type Effective struct {
	Workers       int
	ClaimBatch    int
	CompleteBatch int
}

// Effective returns the relay settings c amounts to.
func (c Config) Effective() Effective {
	pick := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	return Effective{
		Workers:       pick(c.Workers, RelayDefaultWorkers),
		ClaimBatch:    pick(c.ClaimBatch, RelayDefaultClaimBatch),
		CompleteBatch: pick(c.CompleteBatch, RelayDefaultCompleteBatch),
	}
}

// Scenarios returns every scenario's name: those of DefaultScenarios,
// then pressure.
func Scenarios() []string { return append(DefaultScenarios(), "pressure") }

// DefaultScenarios returns the scenarios `txoutbox bench` runs when none
// is named, in that order: all but pressure, which takes five phases of
// PhaseDuration (ten minutes by default).
func DefaultScenarios() []string { return []string{"enqueue", "raw", "drain", "steady"} }

// ErrUnknownScenario is returned by Runner.Run for a name Scenarios does
// not list.
var ErrUnknownScenario = errors.New("bench: unknown scenario")

// KnownScenario reports whether name is one of Scenarios.
func KnownScenario(name string) bool { return slices.Contains(Scenarios(), name) }
