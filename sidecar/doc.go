// Package sidecar is the txoutbox command line as a library: the relay as
// its own process (handlers bound from a configuration file, health checks
// and Prometheus metrics) and the operator commands (migrate, enqueue,
// status, dead list|show|retry, bench, version).
//
// The txoutbox binary is Main plus the built-in handler kinds. A team that
// wants its own Go handlers in the sidecar builds its own binary:
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//		defer stop()
//		os.Exit(sidecar.Main(ctx, os.Args[1:], sidecar.Options{
//			Name: "billing-relay",
//			Handlers: func(h *relay.Handlers) error {
//				relay.HandleTx(h, chargeCustomer)
//				return nil
//			},
//		}))
//	}
//
// Exit codes: ExitOK (0), ExitFailure (1) when a command ran and failed,
// ExitUsage (2) for bad arguments or configuration (a *ConfigError names
// the file's field), in which case nothing was done. A failing command
// prints one message, "txoutbox <command>: <what went wrong>", on
// standard error. Text read from the database (topics, keys, last errors) is
// printed with its control characters escaped, in tables and JSON alike.
// The command line uses the standard flag package: one small FlagSet per
// command, no dependency, and flags may follow arguments.
//
// See docs/sidecar.md for the configuration file, the metrics and
// deployment.
package sidecar
