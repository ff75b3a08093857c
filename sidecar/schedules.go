package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
)

// scheduleConfig declares a recurring entry in the configuration file: a
// topic that a configured handler takes, when it fires, and the payload of
// each period. See docs/schedules.md.
type scheduleConfig struct {
	// Name identifies the schedule; it prefixes every period's key.
	// Required.
	Name string `json:"name"`
	// Cron is a five-field cron expression or a descriptor (@daily),
	// evaluated in Zone. Give cron or every.
	Cron string `json:"cron"`
	// Zone is the IANA time zone of cron. Default "UTC".
	Zone string `json:"zone"`
	// Every is a fixed interval of elapsed time, such as "15m".
	Every string `json:"every"`
	// Anchor aligns every: an RFC 3339 time. Default the Unix epoch.
	Anchor string `json:"anchor"`
	// Missed is the missed-period policy: "latest" (default), "skip" or
	// "all".
	Missed string `json:"missed"`
	// MaxCatchUp bounds the periods one evaluation enqueues. Default 100.
	MaxCatchUp int `json:"max_catch_up"`
	// Grace is how late a period may fire under "skip". Default "1m".
	Grace string `json:"grace"`
	// Topic is the entries' topic; a configured handler must take it.
	// Required.
	Topic string `json:"topic"`
	// Payload is the entries' JSON payload. Every string in it is a Go
	// text/template executed for each period, with .Schedule, .Key, .Time
	// and .Prev (times in the schedule's zone) and the functions rfc3339,
	// date, isoweek and unix. Default {}.
	Payload json.RawMessage `json:"payload"`
	// Queue, Priority and MaxAttempts set the entries' options; zero
	// values take outbox's defaults.
	Queue       string `json:"queue"`
	Priority    int    `json:"priority"`
	MaxAttempts int    `json:"max_attempts"`
}

// fileField maps a schedule.SpecError field to the file's name for it.
func fileField(specField string) string {
	switch specField {
	case "MaxCatchUp":
		return "max_catch_up"
	case "build":
		return "payload"
	}
	return strings.ToLower(specField)
}

// loadSchedules validates the file's schedules and registers them, then
// the program's own (Options.Schedules), in one registry. A configured
// schedule must name a topic that one of handlers takes. It returns nil
// when there are no schedules.
func loadSchedules(o *Options, cfg *fileConfig, handlers *relay.Handlers) (*schedule.Schedules, error) {
	set := schedule.NewSchedules()
	topics := handlers.Topics()
	for i, sc := range cfg.Schedules {
		field := fmt.Sprintf("schedules[%d]", i)
		spec, err := sc.spec(field)
		if err != nil {
			return nil, err
		}
		if sc.Topic == "" {
			return nil, configErr(field+".topic", "required")
		}
		if !containsString(topics, sc.Topic) {
			return nil, configErr(field+".topic", "no handler configured here takes topic %q (handled: %s)", sc.Topic, strings.Join(topics, ", "))
		}
		payload, err := compilePayload(sc.Payload)
		if err != nil {
			return nil, configErr(field+".payload", "%v", err)
		}
		err = schedule.RegisterRaw(set, spec, sc.Topic, func(_ context.Context, p schedule.Period) (json.RawMessage, error) {
			return payload.render(p)
		})
		var se *schedule.SpecError
		if errors.As(err, &se) {
			return nil, configErr(field+"."+fileField(se.Field), "%v", err)
		}
		if err != nil {
			return nil, configErr(field, "%v", err)
		}
		// Render once now, so that a template that fails on execution
		// (an unknown field, say) is a configuration error, not a failure
		// at the first firing.
		next, err := schedule.Preview(spec, time.Now(), 2)
		if err == nil && len(next) == 2 {
			p := schedule.Period{Schedule: spec.Name, Time: next[1], Prev: next[0], Key: schedule.Key(spec.Name, next[1])}
			if _, err := payload.render(p); err != nil {
				return nil, configErr(field+".payload", "%v", err)
			}
		}
	}
	if o.Schedules != nil {
		if err := o.Schedules(set); err != nil {
			return nil, configErr("schedules (program)", "%v", err)
		}
	}
	if set.Len() == 0 {
		return nil, nil
	}
	return set, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// spec turns the file's schedule into a schedule.Spec, naming the field of
// each error.
func (sc scheduleConfig) spec(field string) (schedule.Spec, error) {
	spec := schedule.Spec{Name: sc.Name, Cron: sc.Cron, Zone: sc.Zone, MaxCatchUp: sc.MaxCatchUp}
	bad := func(name string, err error) error { return configErr(field+"."+name, "%v", err) }
	var err error
	if sc.Every != "" {
		if spec.Every, err = time.ParseDuration(sc.Every); err != nil {
			return spec, bad("every", err)
		}
		if spec.Every <= 0 {
			return spec, bad("every", fmt.Errorf("must be positive, got %s", spec.Every))
		}
	}
	if sc.Anchor != "" {
		if spec.Anchor, err = time.Parse(time.RFC3339, sc.Anchor); err != nil {
			return spec, bad("anchor", err)
		}
	}
	if sc.Grace != "" {
		if spec.Grace, err = time.ParseDuration(sc.Grace); err != nil {
			return spec, bad("grace", err)
		}
	}
	if err := spec.Missed.UnmarshalText([]byte(sc.Missed)); err != nil {
		return spec, bad("missed", err)
	}
	if sc.Queue != "" {
		if len(sc.Queue) > outbox.MaxQueueLen {
			return spec, bad("queue", fmt.Errorf("longer than %d bytes", outbox.MaxQueueLen))
		}
		spec.Options = append(spec.Options, outbox.WithQueue(sc.Queue))
	}
	if sc.Priority != 0 {
		if sc.Priority < math.MinInt16 || sc.Priority > math.MaxInt16 {
			return spec, bad("priority", fmt.Errorf("%d is outside [%d, %d]", sc.Priority, math.MinInt16, math.MaxInt16))
		}
		spec.Options = append(spec.Options, outbox.WithPriority(sc.Priority))
	}
	if sc.MaxAttempts != 0 {
		if sc.MaxAttempts < 1 || sc.MaxAttempts > outbox.MaxAttemptsLimit {
			return spec, bad("max_attempts", fmt.Errorf("%d is outside 1–%d", sc.MaxAttempts, outbox.MaxAttemptsLimit))
		}
		spec.Options = append(spec.Options, outbox.WithMaxAttempts(sc.MaxAttempts))
	}
	return spec, nil
}

// payloadTemplate is a JSON value whose strings are templates.
type payloadTemplate struct {
	root any // map[string]any, []any, *template.Template, or a JSON scalar
}

// templateData is what a payload template sees.
type templateData struct {
	Schedule string
	Key      string
	Time     time.Time
	Prev     time.Time
}

// templateFuncs are the functions payload templates may call.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"rfc3339": func(t time.Time) string { return t.Format(time.RFC3339) },
		"date":    func(t time.Time) string { return t.Format(time.DateOnly) },
		"isoweek": func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d-W%02d", y, w) },
		"unix":    func(t time.Time) int64 { return t.Unix() },
	}
}

// compilePayload parses raw (empty means {}) and the templates in its
// strings.
func compilePayload(raw json.RawMessage) (*payloadTemplate, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	root, err := compileValue(v, "")
	if err != nil {
		return nil, err
	}
	return &payloadTemplate{root: root}, nil
}

func compileValue(v any, path string) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, err := compileValue(x[k], path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := compileValue(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case string:
		if !strings.Contains(x, "{{") {
			return x, nil
		}
		name := path
		if name == "" {
			name = "payload"
		}
		t, err := template.New(name).Funcs(templateFuncs()).Option("missingkey=error").Parse(x)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return v, nil
}

// render executes the templates for p and returns the JSON payload.
func (pt *payloadTemplate) render(p schedule.Period) (json.RawMessage, error) {
	data := templateData{Schedule: p.Schedule, Key: p.Key, Time: p.Time, Prev: p.Prev}
	v, err := renderValue(pt.root, &data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func renderValue(v any, data *templateData) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := renderValue(e, data)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderValue(e, data)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case *template.Template:
		var b strings.Builder
		if err := x.Execute(&b, data); err != nil {
			return nil, err
		}
		return b.String(), nil
	}
	return v, nil
}

// scheduleRetry is how long the sidecar waits before running its
// schedules again after the scheduler stopped with an error (the schedules
// migration not applied yet, say).
const scheduleRetry = 30 * time.Second

// startSchedules runs a scheduler for s.schedules on pool, if there are
// any, until the returned function is called; the function waits for the
// scheduler to stop.
func (s *server) startSchedules(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) func() {
	if s.schedules == nil {
		return func() {}
	}
	sched, err := schedule.New(pool, schedule.Config{Schedules: s.schedules, Logger: log})
	if err != nil {
		log.Error("txoutbox: schedules not running", "error", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := sched.Run(ctx)
			if err == nil {
				return
			}
			log.Error("txoutbox: schedules not running; retrying", "error", err, "retry_in", scheduleRetry)
			t := time.NewTimer(scheduleRetry)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// printSchedules writes the schedules recorded in the database: a table
// after the queue table (a missing schedules table is a note), or, with
// only set, the schedules alone (as JSON with asJSON; a missing table is a
// failure).
func printSchedules(ctx context.Context, o *Options, pool *pgxpool.Pool, asJSON, only bool) error {
	list, err := schedule.List(ctx, pool)
	if err != nil {
		if errors.Is(err, schedule.ErrNotMigrated) && !only {
			fmt.Fprintf(o.Stdout, "\nschedules: not available; run '%s migrate up' to add their table\n", o.Name)
			return nil
		}
		return err
	}
	if asJSON {
		if list == nil {
			list = []schedule.Status{}
		}
		return printJSON(o, list)
	}
	if len(list) == 0 {
		if only {
			fmt.Fprintln(o.Stdout, "no schedules")
		}
		return nil
	}
	if !only {
		fmt.Fprintln(o.Stdout)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tTOPIC\tWHEN\tZONE\tMISSED\tLAST\tNEXT")
	for _, st := range list {
		loc := st.Location()
		last, next := "never", "none"
		if st.LastPeriod != nil {
			last = st.LastPeriod.In(loc).Format(time.RFC3339)
		}
		if st.NextPeriod != nil {
			next = st.NextPeriod.In(loc).Format(time.RFC3339)
			if now.Sub(*st.NextPeriod) > time.Minute {
				next += " (overdue: no scheduler running it?)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(st.Name), cell(st.Topic), cell(st.Timing), cell(st.Zone), cell(st.Missed), last, next)
	}
	return tw.Flush()
}
