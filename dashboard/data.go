package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// totals sums the topic rows.
type totals struct {
	Pending, Due, Retrying, Running, Dead int64
	Done, Failed                          int64 // in the window
	Attempts                              int64 // in the window
	OldestDue                             time.Duration
}

// topicRow is one topic and queue.
type topicRow struct {
	outbox.QueueStats
	WindowDone, WindowDead, WindowAttempts int64
}

// PerMinute is the done entries per minute over the window.
func (t topicRow) PerMinute(window time.Duration) float64 {
	return float64(t.WindowDone) / window.Minutes()
}

// FailureRate is the share of attempts (of entries finished in the window)
// that failed; -1 when there were none.
func (t topicRow) FailureRate() float64 { return failureRate(t.WindowAttempts, t.WindowDone) }

// FailureRate of all topics.
func (t totals) FailureRate() float64 { return failureRate(t.Attempts, t.Done) }

// failureRate: every done entry's last attempt succeeded; all other
// attempts failed (retried, rescued after a lost lease, or dead-lettered).
func failureRate(attempts, done int64) float64 {
	if attempts <= 0 {
		return -1
	}
	return float64(attempts-done) / float64(attempts)
}

// runningRow is one running entry.
type runningRow struct {
	ID               int64     `json:"id"`
	Topic            string    `json:"topic"`
	Queue            string    `json:"queue"`
	Attempt          int       `json:"attempt"`
	MaxAttempts      int       `json:"max_attempts"`
	LeaseOwner       *string   `json:"lease_owner"`
	LeaseUntil       time.Time `json:"lease_until"`
	LeaseLeftSeconds float64   `json:"lease_left_seconds"`
}

// LeaseLeft is the time until the lease expires (negative once expired and
// not yet rescued).
func (r runningRow) LeaseLeft() time.Duration {
	return time.Duration(r.LeaseLeftSeconds * float64(time.Second))
}

// deadRow is one dead entry, without its payload.
type deadRow struct {
	ID          int64      `json:"id"`
	Topic       string     `json:"topic"`
	Queue       string     `json:"queue"`
	Key         string     `json:"key"`
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts"`
	FinishedAt  *time.Time `json:"finished_at"`
	Error       *string    `json:"error"`
	ErrorCut    bool       `json:"error_cut"`
}

// chart is the throughput chart: one bar per minute, oldest first, drawn
// as SVG (no JavaScript, and no inline styles for the CSP to refuse).
type chart struct {
	Width, Height int
	Bars          []bar
	Max           int64
}

type bar struct {
	X, W                 int
	DoneY, DoneH         int
	DeadY, DeadH         int
	MinutesAgo           int
	Done, Dead           int64
	TooltipMinutesAgoStr string
}

const (
	barWidth    = 10
	chartHeight = 60
)

func newChart(window time.Duration, minutes []minuteRow) chart {
	n := int(window / time.Minute)
	byAgo := make(map[int]minuteRow, len(minutes))
	var maxTotal int64
	for _, m := range minutes {
		byAgo[m.Minute] = m
		maxTotal = max(maxTotal, m.Done+m.Dead)
	}
	c := chart{Width: n * barWidth, Height: chartHeight, Max: maxTotal}
	for i := range n {
		ago := n - 1 - i
		m := byAgo[ago]
		b := bar{X: i * barWidth, W: barWidth - 2, MinutesAgo: ago, Done: m.Done, Dead: m.Dead}
		if maxTotal > 0 {
			b.DoneH = scale(m.Done, maxTotal)
			b.DeadH = scale(m.Dead, maxTotal)
		}
		b.DoneY = chartHeight - b.DoneH
		b.DeadY = b.DoneY - b.DeadH
		switch ago {
		case 0:
			b.TooltipMinutesAgoStr = "this minute"
		case 1:
			b.TooltipMinutesAgoStr = "1 minute ago"
		default:
			b.TooltipMinutesAgoStr = fmt.Sprintf("%d minutes ago", ago)
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

func scale(v, maxV int64) int {
	if v <= 0 {
		return 0
	}
	return max(1, int(math.Round(float64(v)/float64(maxV)*chartHeight)))
}

type minuteRow struct {
	Minute int   `json:"minute"`
	Done   int64 `json:"done"`
	Dead   int64 `json:"dead"`
}

type windowRow struct {
	Topic    string `json:"topic"`
	Queue    string `json:"queue"`
	Done     int64  `json:"done"`
	Dead     int64  `json:"dead"`
	Attempts int64  `json:"attempts"`
}

// load reads everything the overview shows: four statements, each through
// an index.
func (h *Handler) load(ctx context.Context, deadTopic string, before int64) (*overviewPage, error) {
	stats, err := outbox.Stats(ctx, h.db)
	if err != nil {
		return nil, err
	}
	var win struct {
		Now     time.Time   `json:"now"`
		Topics  []windowRow `json:"topics"`
		Minutes []minuteRow `json:"minutes"`
	}
	if err := h.queryJSON(ctx, &win, sqlWindow, h.cfg.Window.Microseconds()); err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	var running []runningRow
	if err := h.queryJSON(ctx, &running, sqlRunning, h.cfg.RunningLimit+1); err != nil {
		return nil, fmt.Errorf("running entries: %w", err)
	}
	var dead []deadRow
	if err := h.queryJSON(ctx, &dead, sqlDead, nullString(deadTopic), nullInt(before), h.cfg.DeadLimit+1, maxErrorChars); err != nil {
		return nil, fmt.Errorf("dead entries: %w", err)
	}

	p := &overviewPage{Window: h.cfg.Window, DeadTopic: deadTopic, DeadBefore: before}
	p.Now = win.Now
	rows := map[[2]string]*topicRow{}
	for _, s := range stats {
		r := &topicRow{QueueStats: s}
		rows[[2]string{s.Topic, s.Queue}] = r
	}
	for _, w := range win.Topics {
		k := [2]string{w.Topic, w.Queue}
		r := rows[k]
		if r == nil {
			r = &topicRow{QueueStats: outbox.QueueStats{Topic: w.Topic, Queue: w.Queue}}
			rows[k] = r
		}
		r.WindowDone, r.WindowDead, r.WindowAttempts = w.Done, w.Dead, w.Attempts
	}
	for _, r := range rows {
		p.Topics = append(p.Topics, *r)
		t := &p.Totals
		t.Pending += r.Pending
		t.Due += r.Due
		t.Retrying += r.Retrying
		t.Running += r.QueueStats.Running
		t.Dead += r.QueueStats.Dead
		t.Done += r.WindowDone
		t.Failed += r.WindowDead
		t.Attempts += r.WindowAttempts
		t.OldestDue = max(t.OldestDue, r.OldestDue)
	}
	sort.Slice(p.Topics, func(i, j int) bool {
		a, b := p.Topics[i], p.Topics[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Queue < b.Queue
	})
	p.Chart = newChart(h.cfg.Window, win.Minutes)
	if len(running) > h.cfg.RunningLimit {
		running, p.RunningMore = running[:h.cfg.RunningLimit], true
	}
	p.Running = running
	if len(dead) > h.cfg.DeadLimit {
		dead = dead[:h.cfg.DeadLimit]
		p.DeadNext = dead[len(dead)-1].ID
	}
	p.Dead = dead
	return p, nil
}

func (h *Handler) queryJSON(ctx context.Context, dst any, query string, args ...any) error {
	var raw []byte
	if err := h.db.QueryRow(ctx, query, args...).Scan(&raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func sortHeaders(hs []header) {
	sort.Slice(hs, func(i, j int) bool { return hs[i].Key < hs[j].Key })
}

// funcs are the templates' helpers.
func funcs() template.FuncMap {
	return template.FuncMap{
		"age":     age,
		"percent": percent,
		"rate": func(v float64) string {
			switch {
			case v == 0:
				return "0"
			case v < 10:
				return fmt.Sprintf("%.1f", v)
			}
			return fmt.Sprintf("%.0f", v)
		},
		"minutes": func(d time.Duration) string { return fmt.Sprintf("%.0f", d.Minutes()) },
		"time": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"deref": func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		},
		"lower": strings.ToLower,
	}
}

// age renders a duration for people: "4s", "3m 20s", "2h 5m", "3d 4h".
func age(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		s = "0s"
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

// percent renders a rate from failureRate; "–" for no data.
func percent(v float64) string {
	if v < 0 {
		return "–"
	}
	if v > 0 && v < 0.001 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", v*100)
}
