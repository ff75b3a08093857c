package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// timeline prints what happens, one line at a time, from any goroutine:
// the client's requests, the relay's outcomes, and what the SMTP catcher,
// the partner and the PDF store receive. Once started, every line carries
// the time since the first request.
type timeline struct {
	mu    sync.Mutex
	out   io.Writer
	start time.Time        // zero until the first request
	about map[int64]string // what each entry is for, by id
}

func newTimeline(out io.Writer) *timeline {
	return &timeline{out: out, about: map[int64]string{}}
}

// begin starts the clock.
func (tl *timeline) begin() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.start = time.Now()
}

// since returns the time since the first request.
func (tl *timeline) since() time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return time.Since(tl.start)
}

// printf prints one line said by who ("" for headings).
func (tl *timeline) printf(who, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch {
	case who == "":
		fmt.Fprintln(tl.out, msg)
	case tl.start.IsZero():
		fmt.Fprintf(tl.out, "  %-8s %s\n", who, msg)
	default:
		fmt.Fprintf(tl.out, "  %8s  %-8s %s\n", ms(time.Since(tl.start)), who, msg)
	}
}

// describe records what entry id is for, for the relay's lines.
func (tl *timeline) describe(id int64, what string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.about[id] = what
}

func (tl *timeline) entry(id int64, topic string) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if what, ok := tl.about[id]; ok {
		return fmt.Sprintf("#%d %s (%s)", id, topic, what)
	}
	return fmt.Sprintf("#%d %s", id, topic)
}

// observe is the relay's Observer: it prints every outcome.
func (tl *timeline) observe(ev relay.Event) {
	switch ev.Kind {
	case relay.EventDone:
		tl.printf("relay", "%s done on attempt %d; the handler took %s", tl.entry(ev.EntryID, ev.Topic), ev.Attempt, ms(ev.Duration))
	case relay.EventRetry:
		err := ev.Err
		var hint *relay.RetryAfterError
		if errors.As(err, &hint) {
			err = hint.Err // the delay is printed anyway
		}
		tl.printf("relay", "%s attempt %d failed: %v; retry in %s", tl.entry(ev.EntryID, ev.Topic), ev.Attempt, err, ms(ev.RetryIn))
	case relay.EventDead:
		tl.printf("relay", "%s dead-lettered after attempt %d: %v", tl.entry(ev.EntryID, ev.Topic), ev.Attempt, ev.Err)
	case relay.EventSkipped:
		tl.printf("relay", "%s skipped: its key was processed already", tl.entry(ev.EntryID, ev.Topic))
	}
}

// logger returns a logger that prints the relay's warnings and errors on
// the timeline (there should be none).
func (tl *timeline) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(lineWriter{tl: tl, who: "relay"}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type lineWriter struct {
	tl  *timeline
	who string
}

func (w lineWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(string(bytes.TrimRight(p, "\n")), "\n") {
		w.tl.printf(w.who, "log: %s", line)
	}
	return len(p), nil
}

// ms formats a duration for people: 7ms, 312ms, 1.02s.
func ms(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
