package sidecar

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// metrics turns relay events into Prometheus series and reads the table's
// depth and lag on every scrape. It is the relay's Observer.
type metrics struct {
	outcomes  *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	claims    prometheus.Histogram
	completes prometheus.Histogram
	leaseLost prometheus.Counter
	rescued   prometheus.Counter
	errors    prometheus.Counter
	listener  prometheus.Gauge
	vacuums   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, pool func() *pgxpool.Pool) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txoutbox_entries_finished_total",
			Help: "Attempts by outcome: done, skipped (key already processed), retry, dead, handed_back, fenced.",
		}, []string{"topic", "queue", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "txoutbox_attempts_total",
			Help: "Handler attempts started.",
		}, []string{"topic", "queue"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "txoutbox_handler_duration_seconds",
			Help:    "Handler run time per attempt.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"topic", "queue"}),
		claims: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "txoutbox_claim_batch_size",
			Help:    "Entries per claim statement.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		completes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "txoutbox_completion_batch_size",
			Help:    "Outcomes written per completion statement.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txoutbox_leases_lost_total", Help: "Leases that could not be renewed (handler cancelled).",
		}),
		rescued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txoutbox_leases_rescued_total", Help: "Expired leases taken back from stopped relays.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "txoutbox_relay_errors_total", Help: "Failed relay operations (claim, complete, renew, maintenance); retried.",
		}),
		listener: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "txoutbox_listener_connected", Help: "1 while the LISTEN connection is up.",
		}),
		vacuums: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "txoutbox_vacuum_duration_seconds",
			Help:    "VACUUMs of outbox_entries this relay ran (relay.vacuum_threshold), by duration.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}),
	}
	reg.MustRegister(m.outcomes, m.attempts, m.duration, m.claims, m.completes, m.leaseLost, m.rescued, m.errors, m.listener, m.vacuums,
		&tableCollector{pool: pool})
	return m
}

// Observe records one relay event.
func (m *metrics) Observe(e relay.Event) {
	switch e.Kind {
	case relay.EventClaimed:
		m.claims.Observe(float64(e.Count))
	case relay.EventOutcomesWritten:
		m.completes.Observe(float64(e.Count))
	case relay.EventStarted:
		m.attempts.WithLabelValues(e.Topic, e.Queue).Inc()
	case relay.EventDone, relay.EventRetry, relay.EventDead, relay.EventSkipped, relay.EventHandedBack, relay.EventFenced:
		if e.Topic != "" {
			m.outcomes.WithLabelValues(e.Topic, e.Queue, e.Kind.String()).Inc()
		}
		if e.Duration > 0 {
			m.duration.WithLabelValues(e.Topic, e.Queue).Observe(e.Duration.Seconds())
		}
	case relay.EventLeaseLost:
		m.leaseLost.Inc()
	case relay.EventRescued:
		m.rescued.Add(float64(max(e.Count, 1)))
	case relay.EventError:
		m.errors.Inc()
	case relay.EventListenerUp:
		m.listener.Set(1)
	case relay.EventListenerDown:
		m.listener.Set(0)
	case relay.EventVacuumed:
		m.vacuums.Observe(e.Duration.Seconds())
	}
}

// tableCollector reads outbox.Stats on every scrape.
type tableCollector struct {
	pool func() *pgxpool.Pool
}

var (
	descPending = prometheus.NewDesc("txoutbox_entries_pending", "Pending entries (waiting to run).", []string{"topic", "queue"}, nil)
	descDue     = prometheus.NewDesc("txoutbox_entries_due", "Pending entries whose time has come (the backlog).", []string{"topic", "queue"}, nil)
	descRunning = prometheus.NewDesc("txoutbox_entries_running", "Entries leased by a relay.", []string{"topic", "queue"}, nil)
	descDead    = prometheus.NewDesc("txoutbox_entries_dead", "Dead entries kept for inspection and replay.", []string{"topic", "queue"}, nil)
	descLag     = prometheus.NewDesc("txoutbox_oldest_due_seconds", "Age of the oldest due entry: how far behind the relays are.", []string{"topic", "queue"}, nil)
	descUp      = prometheus.NewDesc("txoutbox_database_up", "1 when the last scrape could read the outbox table.", nil, nil)
)

func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descDue, descRunning, descDead, descLag, descUp} {
		ch <- d
	}
}

func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	pool := c.pool()
	if pool == nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := outbox.Stats(ctx, pool)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for _, s := range stats {
		l := []string{s.Topic, s.Queue}
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending), l...)
		ch <- prometheus.MustNewConstMetric(descDue, prometheus.GaugeValue, float64(s.Due), l...)
		ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(s.Running), l...)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(s.Dead), l...)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, s.OldestDue.Seconds(), l...)
	}
}
