// Command txoutbox is the txoutbox sidecar relay and operator tool.
//
//	txoutbox relay --config relay.json     # run the relay with built-in handlers
//	txoutbox migrate up                    # apply the schema
//	txoutbox enqueue <topic> <json>        # write one entry
//	txoutbox status                        # depth, lag, failures
//	txoutbox dead list|show|retry          # dead letters
//	txoutbox bench [scenario...]           # enqueue cost, drain rate, commit→start latency
//
// SIGTERM (or a first SIGINT) drains gracefully; a second SIGINT stops at
// once. See docs/sidecar.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	_ "time/tzdata" // schedules' zones work in images without the system's zoneinfo

	"github.com/txoutbox/txoutbox/sidecar"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		first := <-sigs
		cancel()
		for s := range sigs {
			if s == os.Interrupt && first == os.Interrupt {
				fmt.Fprintln(os.Stderr, "txoutbox: second interrupt, stopping at once")
				os.Exit(1)
			}
			if s == os.Interrupt {
				first = s
			}
		}
	}()
	os.Exit(sidecar.Main(ctx, os.Args[1:], sidecar.Options{
		Version: version(),
		Kinds:   builtinKinds(),
	}))
}

// buildVersion is the release this binary was built as, when the build
// says so: the Dockerfile links it in (-X=main.buildVersion=v0.2.0). Empty
// otherwise.
var buildVersion string

// version is buildVersion when set, else the module's version from the
// build information (v0.2.0 after go install …@v0.2.0), else "(devel)".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
