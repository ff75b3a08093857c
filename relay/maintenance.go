package relay

import (
	"context"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

// maxBatchesPerRun bounds one retention or rescue run.
const maxBatchesPerRun = 100

// maintenanceLoop rescues expired leases and applies retention until ctx is
// done. Every relay runs it; the statements use SKIP LOCKED, so concurrent
// relays share the work instead of blocking each other.
func (r *Relay) maintenanceLoop(ctx context.Context) {
	rescue := time.NewTicker(r.cfg.RescueInterval)
	defer rescue.Stop()
	var retention <-chan time.Time
	unhandledEvery := time.Minute
	if r.cfg.RetentionInterval > 0 {
		t := time.NewTicker(r.cfg.RetentionInterval)
		defer t.Stop()
		retention = t.C
		unhandledEvery = r.cfg.RetentionInterval
	}
	unhandled := time.NewTicker(unhandledEvery)
	defer unhandled.Stop()
	r.rescue(ctx) // entries orphaned by a crash before this start
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			r.rescue(ctx)
		case <-retention:
			r.retain(ctx)
		case <-unhandled.C:
			r.reportUnhandled(ctx)
		}
	}
}

// vacuumLoop checks outbox_entries' dead row versions and vacuums it past
// Config.VacuumThreshold, until ctx is done. It runs apart from the
// maintenance loop, because a VACUUM of a large table takes seconds.
func (r *Relay) vacuumLoop(ctx context.Context) {
	t := time.NewTicker(min(vacuumCheckInterval, r.cfg.RescueInterval))
	defer t.Stop()
	// A VACUUM that removed little (an old transaction holds the rows) is
	// not repeated at every check: the checks skipped double, up to 64.
	backoff, skip := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if skip > 0 {
			skip--
			continue
		}
		switch r.maybeVacuum(ctx) {
		case vacuumNotPermitted:
			return
		case vacuumIneffective:
			backoff = min(max(2*backoff, 1), 64)
			skip = backoff
		case vacuumEffective:
			backoff = 0
		}
	}
}

// vacuumCheckInterval is how often, at most, a relay reads outbox_entries'
// dead row count (Config.VacuumThreshold); RescueInterval if shorter.
const vacuumCheckInterval = 5 * time.Second

// vacuumOutcome is what one check of the table led to.
type vacuumOutcome int

const (
	vacuumNotNeeded    vacuumOutcome = iota // below the threshold, or another relay vacuums
	vacuumEffective                         // vacuumed, and the dead rows went
	vacuumIneffective                       // vacuumed, but most dead rows stayed
	vacuumNotPermitted                      // this role may not vacuum the table: stop checking
)

// maybeVacuum vacuums outbox_entries when it holds more dead row versions
// than VacuumThreshold and a tenth of its live rows.
func (r *Relay) maybeVacuum(ctx context.Context) vacuumOutcome {
	h, err := store.ReadTableHealth(ctx, r.pool)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("txoutbox: reading table statistics failed", "error", err)
		}
		return vacuumNotNeeded
	}
	if h.Dead < int64(r.cfg.VacuumThreshold) || h.Dead < h.Live/10 {
		return vacuumNotNeeded
	}
	if !h.MayVacuum {
		r.log.Info("txoutbox: outbox_entries has many dead row versions, but this role may not VACUUM it; autovacuum must keep up",
			"dead", h.Dead, "live", h.Live)
		return vacuumNotPermitted
	}
	start := time.Now()
	ran, err := store.Vacuum(ctx, r.pool)
	if err != nil {
		if ctx.Err() == nil {
			r.observe(Event{Kind: EventError, Err: err})
			r.log.Warn("txoutbox: vacuuming outbox_entries failed", "error", err)
		}
		return vacuumIneffective
	}
	if !ran {
		return vacuumNotNeeded
	}
	d := time.Since(start)
	r.observe(Event{Kind: EventVacuumed, Count: int(h.Dead), Duration: d})
	after, err := store.ReadTableHealth(ctx, r.pool)
	if err == nil && after.Dead > h.Dead/2 {
		r.log.Warn("txoutbox: vacuumed outbox_entries, but most dead row versions remain; a long-running transaction may hold them",
			"dead_before", h.Dead, "dead_after", after.Dead, "took", d)
		return vacuumIneffective
	}
	r.log.Info("txoutbox: vacuumed outbox_entries", "dead_before", h.Dead, "live", h.Live, "took", d)
	return vacuumEffective
}

func (r *Relay) rescue(ctx context.Context) {
	for range maxBatchesPerRun {
		got, err := store.Rescue(ctx, r.pool, r.now(), r.cfg.RetentionBatchSize)
		if err != nil {
			if ctx.Err() == nil {
				r.observe(Event{Kind: EventError, Err: err})
				r.log.Warn("txoutbox: rescuing expired leases failed", "error", err)
			}
			return
		}
		for _, x := range got {
			kind := EventRescued
			if x.State == store.StateDead {
				kind = EventDead
			}
			r.observe(Event{Kind: kind, Queue: x.Queue, Topic: x.Topic, EntryID: x.ID, Count: 1})
			if q, ok := r.queues[x.Queue]; ok {
				q.signal(q.wake)
			}
		}
		if len(got) > 0 {
			r.log.Info("txoutbox: took back expired leases", "count", len(got))
		}
		if len(got) < r.cfg.RetentionBatchSize {
			return
		}
	}
}

// Retention applies the configured retention once: done entries, dead
// entries and processed keys older than their retention are deleted in
// bounded batches. The relay runs it every RetentionInterval; it is exported
// for operators and tests that want it now.
func (r *Relay) Retention(ctx context.Context) (deleted int64, err error) {
	steps := []struct {
		what string
		do   func() (int64, error)
	}{
		{"done", func() (int64, error) {
			return store.DeleteFinished(ctx, r.pool, r.now(), store.StateDone, r.cfg.DoneRetention, r.cfg.RetentionBatchSize)
		}},
		{"dead", func() (int64, error) {
			return store.DeleteFinished(ctx, r.pool, r.now(), store.StateDead, r.cfg.DeadRetention, r.cfg.RetentionBatchSize)
		}},
		{"processed_keys", func() (int64, error) {
			return store.DeleteProcessedKeys(ctx, r.pool, r.now(), r.cfg.ProcessedKeyRetention, r.cfg.RetentionBatchSize)
		}},
	}
	for _, s := range steps {
		var total int64
		for range maxBatchesPerRun {
			n, err := s.do()
			if err != nil {
				return deleted, err
			}
			total += n
			if n < int64(r.cfg.RetentionBatchSize) {
				break
			}
		}
		if total > 0 {
			r.observe(Event{Kind: EventDeleted, Topic: s.what, Count: int(total)})
		}
		deleted += total
	}
	return deleted, nil
}

func (r *Relay) retain(ctx context.Context) {
	n, err := r.Retention(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.observe(Event{Kind: EventError, Err: err})
			r.log.Warn("txoutbox: retention failed", "error", err)
		}
		return
	}
	if n > 0 {
		r.log.Debug("txoutbox: retention deleted rows", "count", n)
	}
}

// reportUnhandled warns about due entries no relay here can take: a topic
// without a handler or a queue not served. They stay pending, untouched,
// until a relay that handles them runs.
func (r *Relay) reportUnhandled(ctx context.Context) {
	got, err := store.FindUnhandled(ctx, r.pool, r.now(), r.topics, r.cfg.queueNames(), r.cfg.PollInterval)
	if err != nil {
		return
	}
	for _, u := range got {
		r.observe(Event{Kind: EventUnhandled, Topic: u.Topic, Queue: u.Queue, Count: int(u.Count)})
		r.log.Warn("txoutbox: pending entries that this relay has no handler or queue for",
			"topic", u.Topic, "queue", u.Queue, "count", u.Count)
	}
}
