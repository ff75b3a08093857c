package relay

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"crypto/rand"
	"encoding/hex"

	"github.com/txoutbox/txoutbox/outbox"
)

// QueueConfig configures one queue's worker pool.
type QueueConfig struct {
	// MaxWorkers bounds the entries of this queue that run at once in this
	// relay. Default 100; at most 10,000.
	MaxWorkers int
}

// OrderingDeadPolicy says what a dead entry does to later entries of its
// ordering key.
type OrderingDeadPolicy int

const (
	// OrderingSkipDead (the default) lets later entries of the key run once
	// an entry is dead: the key keeps flowing and the dead entry waits in
	// the dead-letter list.
	OrderingSkipDead OrderingDeadPolicy = iota
	// OrderingBlockOnDead holds later entries of the key while an earlier
	// one is dead, until it is replayed and done, or discarded.
	OrderingBlockOnDead
)

// Config configures a Relay. Every field has a documented default; New
// validates the result and returns a *ConfigError for anything out of range.
type Config struct {
	// Handlers maps topics to handlers. Required, with at least one handler.
	Handlers *Handlers

	// Queues lists the queues this relay serves and their worker pools.
	// Default: {"default": {MaxWorkers: 100}}. Entries of other queues are
	// left for relays that serve them.
	Queues map[string]QueueConfig

	// ClaimBatchSize bounds the entries one claim statement takes.
	// Default 100; range 1–1,000.
	ClaimBatchSize int

	// CompleteBatchSize bounds the outcomes one completion statement
	// applies. Default 500; range 1–10,000.
	CompleteBatchSize int

	// PollInterval is how often each queue is polled when no notification
	// arrives; it covers missed notifications, delayed entries coming due
	// and poolers that cannot LISTEN. Default 1s; at least 10ms.
	PollInterval time.Duration

	// DisableListen turns off LISTEN/NOTIFY (for PgBouncer in transaction
	// mode and similar); the relay then relies on polling alone.
	DisableListen bool

	// LeaseDuration is how long a claim holds an entry before another relay
	// may take it over, unless renewed. Default 30s; at least 100ms.
	LeaseDuration time.Duration

	// HeartbeatInterval is how often held leases are renewed, and how
	// often the relay checks for leases it could not renew: a handler is
	// cancelled when its lease would run out before the next check.
	// Default LeaseDuration/3, which is also the most: a renewed lease
	// must outlast the next check plus one interval with room to spare.
	HeartbeatInterval time.Duration

	// RescueInterval is how often expired leases are taken back.
	// Default LeaseDuration/2.
	RescueInterval time.Duration

	// HandlerTimeout bounds one attempt, unless the handler sets its own
	// with WithTimeout. Default 1m.
	HandlerTimeout time.Duration

	// RetryPolicy spaces retries, unless the handler sets its own with
	// WithRetryPolicy. Default ExponentialRetry{} (1s doubling to 1h, 25%
	// jitter).
	RetryPolicy RetryPolicy

	// OrderingDeadPolicy: what a dead entry does to its ordering key.
	// Default OrderingSkipDead.
	OrderingDeadPolicy OrderingDeadPolicy

	// MaxPayloadBytes: entries with a larger payload, or with headers over
	// outbox.MaxHeadersBytes (possible only through plain SQL inserts), are
	// dead-lettered with ErrPayloadTooLarge. The database measures them in
	// the claim: the relay never fetches such an entry's payload or
	// headers. Default outbox.DefaultMaxPayloadBytes (1 MiB).
	MaxPayloadBytes int

	// MaxClaimBytes bounds the payload and header bytes (their JSON text)
	// that one claim fetches: a claim takes entries in order while their
	// sizes add up to at most this, and always at least one. With the
	// prefetch, a queue holds at most about two claims' worth in memory.
	// Default 16 MiB; range 1 KiB–1 GiB.
	MaxClaimBytes int

	// ShutdownTimeout is how long Run waits, once its context is done, for
	// running handlers to finish before cancelling them (cause ErrShutdown)
	// and handing their entries back. Default 30s.
	ShutdownTimeout time.Duration

	// RetentionInterval is how often retention runs. Default 1m; a negative
	// value disables retention in this relay.
	RetentionInterval time.Duration
	// DoneRetention keeps done entries this long. Default 24h.
	DoneRetention time.Duration
	// DeadRetention keeps dead entries this long. Default 30 days.
	DeadRetention time.Duration
	// ProcessedKeyRetention keeps processed keys this long; it is the window
	// in which a re-enqueued key is recognised as done. Default 30 days;
	// must be at least DoneRetention.
	ProcessedKeyRetention time.Duration
	// RetentionBatchSize bounds the rows one retention statement deletes;
	// a run deletes at most 100 batches per table. Default 1,000.
	RetentionBatchSize int

	// VacuumThreshold makes the relay VACUUM outbox_entries itself once the
	// table holds this many dead row versions (and at least a tenth as many
	// as live rows), checked every 5s (or RescueInterval, if shorter); one
	// relay at a time does it. Every
	// claim and completion leaves a dead version behind, and until VACUUM
	// removes them each claim walks past those of its queue's oldest
	// entries: after a backlog of 1,000,000 entries, a claim read 187,000
	// buffers instead of 140. Autovacuum does the same job when it keeps up;
	// this covers servers where it is off or lags behind a burst. Needs the
	// table's owner (otherwise the relay logs once and leaves it to
	// autovacuum). Default 100,000; negative disables.
	VacuumThreshold int

	// ID names this relay in lease_owner and logs. Default host-pid-random.
	// It must be unique among the relays running against one database: after
	// a claim whose result was lost (a dropped connection, a timeout), a
	// relay hands back the entries leased under its ID that it does not
	// know of, without counting the attempt.
	ID string

	// Logger receives the relay's logs. Default slog.Default().
	Logger *slog.Logger

	// Observer receives events for metrics and tests. Optional.
	Observer Observer

	// Tracer, when set, wraps every handler attempt, for example in an
	// OpenTelemetry span that continues the producer's trace (package
	// txotel). Default nil: no tracing, at no cost.
	Tracer Tracer

	// Now, when set, replaces the database clock for due times, leases and
	// retention (tests). Default nil: the database's now().
	Now func() time.Time
}

// Limits on Config values.
const (
	maxWorkersLimit  = 10000
	maxClaimBatch    = 1000
	maxCompleteBatch = 10000
)

// Validate reports whether New would accept c, without needing a pool:
// nil, or the *ConfigError New would return.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// WithDefaults returns the configuration New would run with: a copy of c
// with every unset field given its default, or the *ConfigError New would
// return. Handy for logging or reporting the effective settings.
func (c Config) WithDefaults() (Config, error) { return c.withDefaults() }

// withDefaults returns a copy of c with defaults filled in and validates it.
func (c Config) withDefaults() (Config, error) {
	if c.Handlers == nil {
		return c, configErr("Handlers", "required")
	}
	if err := c.Handlers.err(); err != nil {
		return c, err
	}
	if len(c.Handlers.byTopic) == 0 {
		return c, configErr("Handlers", "no handler registered")
	}
	if c.Queues == nil {
		c.Queues = map[string]QueueConfig{outbox.DefaultQueue: {}}
	}
	if len(c.Queues) == 0 {
		return c, configErr("Queues", "no queue to serve")
	}
	queues := make(map[string]QueueConfig, len(c.Queues))
	for name, q := range c.Queues {
		if name == "" || len(name) > outbox.MaxQueueLen {
			return c, configErr("Queues", "queue name %q must be 1–%d bytes", name, outbox.MaxQueueLen)
		}
		if q.MaxWorkers == 0 {
			q.MaxWorkers = 100
		}
		if q.MaxWorkers < 1 || q.MaxWorkers > maxWorkersLimit {
			return c, configErr("Queues", "queue %q MaxWorkers %d outside 1–%d", name, q.MaxWorkers, maxWorkersLimit)
		}
		queues[name] = q
	}
	c.Queues = queues

	intField := func(name string, v *int, def, lo, hi int) error {
		if *v == 0 {
			*v = def
		}
		if *v < lo || *v > hi {
			return configErr(name, "%d outside %d–%d", *v, lo, hi)
		}
		return nil
	}
	durField := func(name string, v *time.Duration, def, lo time.Duration) error {
		if *v == 0 {
			*v = def
		}
		if *v < lo {
			return configErr(name, "%s is below the minimum %s", *v, lo)
		}
		return nil
	}
	for _, err := range []error{
		intField("ClaimBatchSize", &c.ClaimBatchSize, 100, 1, maxClaimBatch),
		intField("CompleteBatchSize", &c.CompleteBatchSize, 500, 1, maxCompleteBatch),
		intField("MaxPayloadBytes", &c.MaxPayloadBytes, outbox.DefaultMaxPayloadBytes, 1, 1<<30),
		intField("MaxClaimBytes", &c.MaxClaimBytes, 16<<20, 1<<10, 1<<30),
		intField("RetentionBatchSize", &c.RetentionBatchSize, 1000, 1, 100000),
		durField("PollInterval", &c.PollInterval, time.Second, 10*time.Millisecond),
		durField("LeaseDuration", &c.LeaseDuration, 30*time.Second, 100*time.Millisecond),
		durField("HandlerTimeout", &c.HandlerTimeout, time.Minute, time.Millisecond),
		durField("ShutdownTimeout", &c.ShutdownTimeout, 30*time.Second, 0),
		durField("DoneRetention", &c.DoneRetention, 24*time.Hour, 0),
		durField("DeadRetention", &c.DeadRetention, 30*24*time.Hour, 0),
		durField("ProcessedKeyRetention", &c.ProcessedKeyRetention, 30*24*time.Hour, 0),
	} {
		if err != nil {
			return c, err
		}
	}
	if err := durField("HeartbeatInterval", &c.HeartbeatInterval, c.LeaseDuration/3, 10*time.Millisecond); err != nil {
		return c, err
	}
	if c.HeartbeatInterval > c.LeaseDuration/3 {
		return c, configErr("HeartbeatInterval", "%s must be at most a third of LeaseDuration %s", c.HeartbeatInterval, c.LeaseDuration)
	}
	if err := durField("RescueInterval", &c.RescueInterval, c.LeaseDuration/2, 10*time.Millisecond); err != nil {
		return c, err
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Minute
	}
	if c.RetentionInterval > 0 && c.RetentionInterval < 10*time.Millisecond {
		return c, configErr("RetentionInterval", "%s is below the minimum 10ms", c.RetentionInterval)
	}
	if c.ProcessedKeyRetention < c.DoneRetention {
		return c, configErr("ProcessedKeyRetention", "%s is shorter than DoneRetention %s; a re-enqueued key would run again", c.ProcessedKeyRetention, c.DoneRetention)
	}
	if c.OrderingDeadPolicy != OrderingSkipDead && c.OrderingDeadPolicy != OrderingBlockOnDead {
		return c, configErr("OrderingDeadPolicy", "unknown policy %d", c.OrderingDeadPolicy)
	}
	if c.VacuumThreshold == 0 {
		c.VacuumThreshold = 100_000
	}
	if c.RetryPolicy == nil {
		c.RetryPolicy = ExponentialRetry{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ID == "" {
		c.ID = defaultID()
	}
	if len(c.ID) > 200 {
		return c, configErr("ID", "longer than 200 bytes")
	}
	return c, nil
}

func defaultID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func (c Config) queueNames() []string {
	out := make([]string, 0, len(c.Queues))
	for q := range c.Queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}
