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

	"github.com/jackc/pgx/v5/pgconn"
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
func connect(ctx context.Context, o *Options, flagURL string) (*pgxpool.Pool, int) {
	url := flagURL
	if url == "" {
		url = o.Getenv("DATABASE_URL")
	}
	if url == "" {
		fmt.Fprintf(o.Stderr, "%s: no database: pass --database-url or set DATABASE_URL\n", o.Name)
		return nil, ExitUsage
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintf(o.Stderr, "%s: database URL: %v\n", o.Name, err)
		return nil, ExitUsage
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		fmt.Fprintf(o.Stderr, "%s: cannot reach the database: %v\n", o.Name, err)
		return nil, ExitFailure
	}
	return pool, 0
}

func fail(o *Options, err error) int {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		fmt.Fprintf(o.Stderr, "%s: the outbox tables are missing in this database: run '%s migrate up' (%v)\n", o.Name, o.Name, err)
		return ExitFailure
	}
	fmt.Fprintf(o.Stderr, "%s: %v\n", o.Name, err)
	return ExitFailure
}

func runMigrate(ctx context.Context, o *Options, args []string) int {
	fs := newFlags(o, "migrate", "migrate up|down|status [flags]",
		"migrate up --database-url postgres://app@db/app", "migrate status")
	dbURL := dbFlag(o, fs)
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() != 1 || !strings.Contains(" up down status ", " "+fs.Arg(0)+" ") {
		fmt.Fprintf(o.Stderr, "%s migrate: want exactly one of up, down, status\n", o.Name)
		fs.Usage()
		return ExitUsage
	}
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	switch fs.Arg(0) {
	case "up":
		res, err := migrations.Up(ctx, db)
		if err != nil {
			return fail(o, err)
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
			return fail(o, err)
		}
		fmt.Fprintf(o.Stdout, "rolled back %s\n", r.Source)
	case "status":
		st, err := migrations.Status(ctx, db)
		if err != nil {
			return fail(o, err)
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(o.Stdout, "%-8s %s\n", state, s.Source)
		}
	}
	return ExitOK
}

func runEnqueue(ctx context.Context, o *Options, args []string) int {
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
	if code, done := parse(fs, reorder(fs, args)); done {
		return code
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(o.Stderr, "%s enqueue: want <topic> <json>\n", o.Name)
		fs.Usage()
		return ExitUsage
	}
	payload := json.RawMessage(fs.Arg(1))
	if !json.Valid(payload) {
		fmt.Fprintf(o.Stderr, "%s enqueue: the payload is not valid JSON\n", o.Name)
		return ExitUsage
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
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	res, err := outbox.Enqueue(ctx, pool, outbox.Raw{TopicName: fs.Arg(0), Payload: payload}, opts...)
	if err != nil {
		if isInvalid(err) {
			fmt.Fprintf(o.Stderr, "%s enqueue: %v\n", o.Name, err)
			return ExitUsage
		}
		return fail(o, err)
	}
	if res.Duplicate {
		fmt.Fprintf(o.Stdout, "entry %d already exists with that key (duplicate)\n", res.ID)
	} else {
		fmt.Fprintf(o.Stdout, "enqueued entry %d\n", res.ID)
	}
	return ExitOK
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

func runStatus(ctx context.Context, o *Options, args []string) int {
	fs := newFlags(o, "status", "status [--json] [--schedules]", "status", "status --json | jq '.[] | select(.dead > 0)'",
		"status --schedules --json")
	dbURL := dbFlag(o, fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	onlySchedules := fs.Bool("schedules", false, "show only the schedules: last and next firing of each")
	if code, done := parse(fs, args); done {
		return code
	}
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	if *onlySchedules {
		return printSchedules(ctx, o, pool, *asJSON, true)
	}
	stats, err := outbox.Stats(ctx, pool)
	if err != nil {
		return fail(o, err)
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Topic, s.Queue, s.Pending, s.Due,
			s.Retrying, s.Running, s.Dead, s.DoneLastHour, s.DeadLastHour, s.OldestDue.Round(time.Millisecond))
	}
	_ = tw.Flush()
	return printSchedules(ctx, o, pool, false, false)
}

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

func printJSON(o *Options, v any) int {
	enc := json.NewEncoder(o.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(o, err)
	}
	return ExitOK
}

func runDead(ctx context.Context, o *Options, args []string) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "retry") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(o.Stdout, "Usage: %s dead list|show|retry [flags]\n", o.Name)
			return ExitOK
		}
		fmt.Fprintf(o.Stderr, "Usage: %s dead list|show|retry [flags]\n", o.Name)
		return ExitUsage
	}
	switch args[0] {
	case "list":
		return deadList(ctx, o, args[1:])
	case "show":
		return deadShow(ctx, o, args[1:])
	default:
		return deadRetry(ctx, o, args[1:])
	}
}

func deadList(ctx context.Context, o *Options, args []string) int {
	fs := newFlags(o, "dead list", "dead list [--topic T] [--limit N] [--json]", "dead list --topic webhook.deliver")
	dbURL := dbFlag(o, fs)
	topic := fs.String("topic", "", "only this topic")
	limit := fs.Int("limit", 50, "at most this many (up to 1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, done := parse(fs, args); done {
		return code
	}
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	dead, err := outbox.ListDead(ctx, pool, outbox.DeadFilter{Topic: *topic, Limit: *limit})
	if err != nil {
		return fail(o, err)
	}
	if *asJSON {
		return printJSON(o, dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(o.Stdout, "no dead entries")
		return ExitOK
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOPIC\tKEY\tATTEMPTS\tFINISHED\tLAST ERROR")
	for _, e := range dead {
		finished := ""
		if e.FinishedAt != nil {
			finished = e.FinishedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\n", e.ID, e.Topic, e.Key, e.Attempt, e.MaxAttempts, finished, oneLine(e.LastError, 80))
	}
	_ = tw.Flush()
	return ExitOK
}

func oneLine(s *string, max int) string {
	if s == nil {
		return ""
	}
	v := strings.Join(strings.Fields(*s), " ")
	if len(v) > max {
		v = v[:max-3] + "..."
	}
	return v
}

func deadShow(ctx context.Context, o *Options, args []string) int {
	fs := newFlags(o, "dead show", "dead show <id>", "dead show 42")
	dbURL := dbFlag(o, fs)
	if code, done := parse(fs, reorder(fs, args)); done {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		fmt.Fprintf(o.Stderr, "%s dead show: %q is not an entry id\n", o.Name, fs.Arg(0))
		return ExitUsage
	}
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	e, err := outbox.Get(ctx, pool, id)
	if err != nil {
		return fail(o, err)
	}
	return printJSON(o, e)
}

func deadRetry(ctx context.Context, o *Options, args []string) int {
	fs := newFlags(o, "dead retry", "dead retry (<id>... | --topic T | --all) [--dry-run]",
		"dead retry 41 42", "dead retry --topic webhook.deliver --dry-run", "dead retry --all")
	dbURL := dbFlag(o, fs)
	topic := fs.String("topic", "", "retry every dead entry of this topic")
	all := fs.Bool("all", false, "retry every dead entry")
	dry := fs.Bool("dry-run", false, "only say what would be retried")
	if code, done := parse(fs, reorder(fs, args)); done {
		return code
	}
	sel := outbox.Selection{Topic: *topic, All: *all}
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			fmt.Fprintf(o.Stderr, "%s dead retry: %q is not an entry id\n", o.Name, a)
			return ExitUsage
		}
		sel.IDs = append(sel.IDs, id)
	}
	if len(sel.IDs) == 0 && sel.Topic == "" && !sel.All {
		fmt.Fprintf(o.Stderr, "%s dead retry: name ids, --topic or --all\n", o.Name)
		fs.Usage()
		return ExitUsage
	}
	pool, code := connect(ctx, o, *dbURL)
	if pool == nil {
		return code
	}
	defer pool.Close()
	if *dry {
		n, err := countSelected(ctx, pool, sel)
		if err != nil {
			return fail(o, err)
		}
		fmt.Fprintf(o.Stdout, "would retry %d dead entries (dry run)\n", n)
		return ExitOK
	}
	n, err := outbox.Replay(ctx, pool, sel)
	if err != nil {
		if isInvalid(err) {
			fmt.Fprintf(o.Stderr, "%s dead retry: %v\n", o.Name, err)
			return ExitUsage
		}
		return fail(o, err)
	}
	fmt.Fprintf(o.Stdout, "retrying %d dead entries\n", n)
	return ExitOK
}

// countSelected counts the dead entries a selection names, for --dry-run.
func countSelected(ctx context.Context, pool *pgxpool.Pool, sel outbox.Selection) (int64, error) {
	var n int64
	var ids any
	if len(sel.IDs) > 0 {
		ids = sel.IDs
	}
	var topic any
	if sel.Topic != "" {
		topic = sel.Topic
	}
	err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_entries WHERE state = 'dead'
		AND (($1::bigint[] IS NOT NULL AND id = ANY($1::bigint[])) OR ($2::text IS NOT NULL AND topic = $2::text) OR $3::bool)`,
		ids, topic, sel.All).Scan(&n)
	return n, err
}

func isInvalid(err error) bool { return errors.Is(err, outbox.ErrInvalid) }
