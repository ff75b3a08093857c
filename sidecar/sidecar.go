package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/schedule"
	"github.com/txoutbox/txoutbox/sidecar/internal/bench"
)

// Exit codes of Main.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command ran and failed (database error, failed check)
	ExitUsage   = 2 // bad arguments or configuration; nothing was done
)

// Kind is a handler kind that the configuration file can bind, such as the
// built-in "webhook", "email" and "pdf".
type Kind struct {
	// Name is the value of "kind" in the configuration file.
	Name string
	// Register decodes the kind's settings (the handler's "config" object;
	// use DecodeStrict, which refuses unknown fields), reads secrets
	// through getenv, and registers the handler on h with opts. An error
	// makes the command exit with ExitUsage. Return a *ConfigError whose
	// Field is the setting's path inside "config" ("max_bytes",
	// "endpoints.crm.url", as DecodeStrict's errors do): the message then
	// names it in full, "handlers[2].config.max_bytes"; other errors are
	// reported for the whole "config".
	Register func(h *relay.Handlers, raw json.RawMessage, getenv func(string) string, opts ...relay.HandlerOption) error
}

// Options configures Main.
type Options struct {
	// Name is the program name shown in help. Default "txoutbox".
	Name string
	// Version is printed by the version command.
	Version string
	// Kinds are the handler kinds the configuration file may bind.
	Kinds []Kind
	// Handlers registers the program's own Go handlers, in addition to the
	// configured ones. Optional.
	Handlers func(h *relay.Handlers) error
	// Schedules registers the program's own recurring entries, in
	// addition to the configured ones; the relay command runs them next
	// to the relay. Optional. See docs/schedules.md.
	Schedules func(set *schedule.Schedules) error
	// Stdout and Stderr receive output; defaults os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Getenv reads the environment; default os.Getenv.
	Getenv func(string) string
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "txoutbox"
	}
	if o.Version == "" {
		o.Version = "(devel)"
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
}

// command is one subcommand. run returns nil on success; Main reports an
// error and chooses the exit code (exitCode).
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, o *Options, args []string) error
}

func commands() []command {
	return []command{
		{"relay", "run the relay with the configured handlers; serve /healthz, /readyz, /metrics", runRelay},
		{"migrate", "apply, roll back or show the schema migrations (up|down|status)", runMigrate},
		{"enqueue", "enqueue one entry: enqueue <topic> <json>", runEnqueue},
		{"status", "depth, lag and failures per topic and queue; schedules' last and next firing", runStatus},
		{"dead", "list, show and retry dead entries (list|show|retry)", runDead},
		{"bench", "measure enqueue cost, relay drain rate and commit→start latency (enqueue|raw|drain|steady)", runBench},
		{"version", "print the version", runVersion},
	}
}

// hiddenCommands are commands that Main runs but help does not list: the
// internals of other commands.
func hiddenCommands() []command {
	return []command{
		{bench.RelayProcessCommand, "one relay process of bench --processes", runBenchRelay},
	}
}

// Main runs the command line in args (without the program name) and
// returns the exit code: ExitOK, ExitFailure or ExitUsage. A command that
// fails prints one message, "<name> <command>: <what went wrong>", on
// Options.Stderr. Cancel ctx to stop a running relay gracefully. It never
// calls os.Exit.
func Main(ctx context.Context, args []string, opts Options) int {
	opts.defaults()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(&opts, opts.Stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range append(commands(), hiddenCommands()...) {
		if c.name == args[0] {
			return exitCode(&opts, c.name, c.run(ctx, &opts, args[1:]))
		}
	}
	fmt.Fprintf(opts.Stderr, "%s: unknown command %q\n\n", opts.Name, args[0])
	usage(&opts, opts.Stderr)
	return ExitUsage
}

func usage(o *Options, w io.Writer) {
	fmt.Fprintf(w, "%s: the txoutbox relay and operator tool\n\nUsage:\n  %s <command> [flags]\n\nCommands:\n", o.Name, o.Name)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags and examples.\n", o.Name)
	fmt.Fprintf(w, "Exit codes: 0 ok, 1 failure, 2 usage or configuration error.\n")
}

// newFlags returns a FlagSet that prints its usage with examples.
func newFlags(o *Options, name, synopsis string, examples ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s\n\nFlags:\n", o.Name, synopsis)
		fs.PrintDefaults()
		if len(examples) > 0 {
			fmt.Fprintf(w, "\nExamples:\n")
			for _, e := range examples {
				fmt.Fprintf(w, "  %s %s\n", o.Name, e)
			}
		}
	}
	return fs
}

// parse parses flags. Asked for help, it prints the usage and returns
// flag.ErrHelp (Main exits ExitOK); a bad flag is a usage error whose
// message Main prints, followed by the usage.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package would print the error and usage itself
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return flag.ErrHelp
	}
	return &usageError{err: err, usage: fs.Usage}
}

func runVersion(_ context.Context, o *Options, args []string) error {
	fs := newFlags(o, "version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "%s %s\n", o.Name, o.Version)
	return nil
}

// buildHandlers registers the configured kinds and the program's own
// handlers. Errors are *ConfigError values naming the handler's field.
func buildHandlers(o *Options, cfg *fileConfig) (*relay.Handlers, error) {
	h := relay.NewHandlers()
	kinds := map[string]Kind{}
	for _, k := range o.Kinds {
		kinds[k.Name] = k
	}
	for i, hc := range cfg.Handlers {
		field := fmt.Sprintf("handlers[%d]", i)
		k, ok := kinds[hc.Kind]
		if !ok {
			names := make([]string, 0, len(kinds))
			for n := range kinds {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, configErr(field+".kind", "unknown handler kind %q (known: %s)", hc.Kind, strings.Join(names, ", "))
		}
		raw := hc.Config
		if len(raw) == 0 {
			raw = json.RawMessage("{}")
		}
		if err := k.Register(h, raw, o.Getenv, hc.handlerOptions()...); err != nil {
			return nil, kindError(field+".config", err)
		}
	}
	if o.Handlers != nil {
		if err := o.Handlers(h); err != nil {
			return nil, configErr("handlers (program)", "%v", err)
		}
	}
	return h, nil
}

// kindError reports an error of a kind's Register under the handler's
// config field: a *ConfigError's field inside it (handlers[2].config +
// max_bytes), anything else as the whole config's.
func kindError(field string, err error) error {
	var ce *ConfigError
	if !errors.As(err, &ce) {
		return configErr(field, "%v", err)
	}
	if ce.Field != "" {
		field += "." + ce.Field
	}
	return configErr(field, "%s", ce.Reason)
}

// newLogger builds the logger the configuration asks for.
func newLogger(w io.Writer, lc logConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level))
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
