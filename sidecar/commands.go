package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/migrations"
	"github.com/txoutbox/txoutbox/outbox"
)

// dbFlag adds --database-url, defaulting to $DATABASE_URL.
func dbFlag(o *Options, fs *flag.FlagSet) *string {
	return fs.String("database-url", "", "PostgreSQL connection URL (default $DATABASE_URL)")
}

// connect opens a pool on the URL from the flag or the environment.
func connect(ctx context.Context, o *Options, flagURL string) (*pgxpool.Pool, error) {
	url := flagURL
	if url == "" {
		url = o.Getenv("DATABASE_URL")
	}
	if url == "" {
		return nil, usagef("no database: pass --database-url or set DATABASE_URL")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, usagef("database URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach the database: %w", err)
	}
	return pool, nil
}

func runMigrate(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "migrate", "migrate up|down|status [flags]",
		"migrate up --database-url postgres://app@db/app", "migrate status")
	dbURL := dbFlag(o, fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || !strings.Contains(" up down status ", " "+fs.Arg(0)+" ") {
		return &usageError{err: errors.New("want exactly one of up, down, status"), usage: fs.Usage}
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	switch fs.Arg(0) {
	case "up":
		res, err := migrations.Up(ctx, db)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			fmt.Fprintln(o.Stdout, "schema is up to date")
		}
		for _, r := range res {
			fmt.Fprintf(o.Stdout, "applied %s (%s)\n", r.Source, r.Duration)
		}
	case "down":
		r, err := migrations.Down(ctx, db)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Stdout, "rolled back %s\n", r.Source)
	case "status":
		st, err := migrations.Status(ctx, db)
		if err != nil {
			return err
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(o.Stdout, "%-8s %s\n", state, s.Source)
		}
	}
	return nil
}

func runEnqueue(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "enqueue", "enqueue [flags] <topic> <json>",
		`enqueue email.welcome '{"user_id": 42}' --key welcome:42`,
		`enqueue webhook.deliver '{"endpoint":"crm","type":"user.created","body":{}}' --delay 5m`)
	dbURL := dbFlag(o, fs)
	key := fs.String("key", "", "idempotency key (default: generated)")
	okey := fs.String("ordering-key", "", "ordering key")
	queue := fs.String("queue", "", "queue (default \"default\")")
	prio := fs.Int("priority", 0, "priority; higher runs first")
	delay := fs.Duration("delay", 0, "run no sooner than this from now")
	maxAttempts := fs.Int("max-attempts", 0, "attempt limit (default 25)")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return &usageError{err: errors.New("want <topic> <json>"), usage: fs.Usage}
	}
	payload := json.RawMessage(fs.Arg(1))
	if !json.Valid(payload) {
		return usagef("the payload is not valid JSON")
	}
	opts := []outbox.Option{outbox.WithPriority(*prio), outbox.WithDelay(*delay), outbox.WithMaxAttempts(*maxAttempts)}
	if *key != "" {
		opts = append(opts, outbox.WithKey(*key))
	}
	if *okey != "" {
		opts = append(opts, outbox.WithOrderingKey(*okey))
	}
	if *queue != "" {
		opts = append(opts, outbox.WithQueue(*queue))
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := outbox.Enqueue(ctx, pool, outbox.Raw{TopicName: fs.Arg(0), Payload: payload}, opts...)
	if err != nil {
		return invalidAsUsage(err)
	}
	if res.Duplicate {
		fmt.Fprintf(o.Stdout, "entry %d already exists with that key (duplicate)\n", res.ID)
	} else {
		fmt.Fprintf(o.Stdout, "enqueued entry %d\n", res.ID)
	}
	return nil
}

// reorder moves flags after positional arguments to the front, so that
// "enqueue topic json --key k" works like "enqueue --key k topic json".
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") {
				if f := fs.Lookup(name); f != nil {
					if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
						if i+1 < len(args) {
							flags = append(flags, args[i+1])
							i++
						}
					}
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func runStatus(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "status", "status [--json] [--schedules]", "status", "status --json | jq '.[] | select(.dead > 0)'",
		"status --schedules --json")
	dbURL := dbFlag(o, fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	onlySchedules := fs.Bool("schedules", false, "show only the schedules: last and next firing of each")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *onlySchedules {
		return printSchedules(ctx, o, pool, *asJSON, true)
	}
	stats, err := outbox.Stats(ctx, pool)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(o, statsJSON(stats))
	}
	if len(stats) == 0 {
		fmt.Fprintln(o.Stdout, "the outbox is empty")
		return printSchedules(ctx, o, pool, false, false)
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tQUEUE\tPENDING\tDUE\tRETRYING\tRUNNING\tDEAD\tDONE/1H\tDEAD/1H\tLAG")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", cell(s.Topic), cell(s.Queue), s.Pending, s.Due,
			s.Retrying, s.Running, s.Dead, s.DoneLastHour, s.DeadLastHour, s.OldestDue.Round(time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printSchedules(ctx, o, pool, false, false)
}

// cell is a table cell holding text from the database: control characters
// escaped (escapeControls), so that it can neither act on the terminal
// nor break the table's lines and columns.
func cell(s string) string { return escapeControls(s, false) }

// statsJSON is the documented JSON form of status: durations in seconds.
func statsJSON(stats []outbox.QueueStats) []map[string]any {
	out := make([]map[string]any, 0, len(stats))
	for _, s := range stats {
		out = append(out, map[string]any{
			"topic": s.Topic, "queue": s.Queue, "pending": s.Pending, "due": s.Due,
			"retrying": s.Retrying, "running": s.Running, "dead": s.Dead,
			"done_last_hour": s.DoneLastHour, "dead_last_hour": s.DeadLastHour,
			"oldest_due_seconds": s.OldestDue.Seconds(),
		})
	}
	return out
}

// printJSON writes v as indented JSON. encoding/json escapes the C0
// controls in strings but leaves DEL and the C1 controls as they are;
// escapeControls writes those as \u escapes too, which decode to the
// same text.
func printJSON(o *Options, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(o.Stdout, escapeControls(string(b), true))
	return err
}

func runDead(ctx context.Context, o *Options, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "retry") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(o.Stdout, "Usage: %s dead list|show|retry [flags]\n", o.Name)
			return nil
		}
		return &usageError{err: errors.New("want one of list, show, retry"), usage: func() {
			fmt.Fprintf(o.Stderr, "Usage: %s dead list|show|retry [flags]\n", o.Name)
		}}
	}
	var err error
	switch args[0] {
	case "list":
		err = deadList(ctx, o, args[1:])
	case "show":
		err = deadShow(ctx, o, args[1:])
	default:
		err = deadRetry(ctx, o, args[1:])
	}
	if err != nil {
		return &commandError{name: "dead " + args[0], err: err}
	}
	return nil
}

func deadList(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "dead list", "dead list [--topic T] [--limit N] [--json]", "dead list --topic webhook.deliver")
	dbURL := dbFlag(o, fs)
	topic := fs.String("topic", "", "only this topic")
	limit := fs.Int("limit", 50, "at most this many (up to 1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	dead, err := outbox.ListDead(ctx, pool, outbox.DeadFilter{Topic: *topic, Limit: *limit})
	if err != nil {
		return invalidAsUsage(err)
	}
	if *asJSON {
		return printJSON(o, dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(o.Stdout, "no dead entries")
		return nil
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOPIC\tKEY\tATTEMPTS\tFINISHED\tLAST ERROR")
	for _, e := range dead {
		finished := ""
		if e.FinishedAt != nil {
			finished = e.FinishedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", e.ID, cell(e.Topic), cell(e.Key), e.Attempt, e.MaxAttempts, finished, oneLine(e.LastError, 80))
	}
	return tw.Flush()
}

// oneLine is the start of a last error for a table: runs of white space
// made one space, control characters escaped (cell), and at most max
// characters, cut with "...".
func oneLine(s *string, max int) string {
	if s == nil {
		return ""
	}
	v := []rune(cell(strings.Join(strings.Fields(*s), " ")))
	if len(v) > max {
		v = append(v[:max-3], []rune("...")...)
	}
	return string(v)
}

func deadShow(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "dead show", "dead show <id>", "dead show 42")
	dbURL := dbFlag(o, fs)
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{err: errors.New("want one entry id"), usage: fs.Usage}
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		return usagef("%q is not an entry id", fs.Arg(0))
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	e, err := outbox.Get(ctx, pool, id)
	if err != nil {
		return err
	}
	return printJSON(o, e)
}

func deadRetry(ctx context.Context, o *Options, args []string) error {
	fs := newFlags(o, "dead retry", "dead retry (<id>... | --topic T | --all) [--dry-run]",
		"dead retry 41 42", "dead retry --topic webhook.deliver --dry-run", "dead retry --all")
	dbURL := dbFlag(o, fs)
	topic := fs.String("topic", "", "retry every dead entry of this topic")
	all := fs.Bool("all", false, "retry every dead entry")
	dry := fs.Bool("dry-run", false, "only say what would be retried")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
	sel := outbox.Selection{Topic: *topic, All: *all}
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return usagef("%q is not an entry id", a)
		}
		sel.IDs = append(sel.IDs, id)
	}
	if len(sel.IDs) == 0 && sel.Topic == "" && !sel.All {
		// Said before connecting; outbox checks the selection in full.
		return &usageError{err: errors.New("name ids, --topic or --all"), usage: fs.Usage}
	}
	pool, err := connect(ctx, o, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *dry {
		n, err := outbox.CountDead(ctx, pool, sel)
		if err != nil {
			return invalidAsUsage(err)
		}
		fmt.Fprintf(o.Stdout, "would retry %d dead entries (dry run)\n", n)
		return nil
	}
	n, err := outbox.Replay(ctx, pool, sel)
	if err != nil {
		return invalidAsUsage(err)
	}
	fmt.Fprintf(o.Stdout, "retrying %d dead entries\n", n)
	return nil
}

// invalidAsUsage makes outbox's validation errors (ErrInvalid: a bad key,
// limit or selection; nothing was done) usage errors.
func invalidAsUsage(err error) error {
	if errors.Is(err, outbox.ErrInvalid) {
		return usageOf(err)
	}
	return err
}
