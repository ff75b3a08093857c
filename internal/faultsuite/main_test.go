package faultsuite

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pglocal"
	"github.com/txoutbox/txoutbox/internal/rabbittest"
)

func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		os.Exit(childMain(raw))
	}
	// Relays run in this process too (cut_test.go, poison_test.go): after
	// they shut down, under faults, no goroutine of theirs may be left.
	goleak.VerifyTestMain(rabbittest.WithCleanup(clusterCleanup{m}))
}

// clusterCleanup runs the tests, then stops the shared cluster.
type clusterCleanup struct{ m *testing.M }

func (c clusterCleanup) Run() int {
	code := c.m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		if err := shared.c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "faultsuite: stopping the cluster:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// shared is the package's PostgreSQL cluster, started by the first test
// that needs it. Every test makes its own database on it; the cluster is
// private to this test binary, so pg_stat_activity shows only the suite's
// sessions and max_connections is the suite's alone.
var shared struct {
	mu  sync.Mutex
	c   *pglocal.Cluster
	err error
}

func cluster(t testing.TB) *pglocal.Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil && shared.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.c, shared.err = pglocal.Start(ctx, pglocal.Options{Settings: map[string]string{
			"max_connections": "300",
			"shared_buffers":  "128MB",
		}})
	}
	if shared.err != nil {
		t.Fatalf("local PostgreSQL cluster (the fault suite needs the PostgreSQL server binaries): %v", shared.err)
	}
	return shared.c
}

// Sizes. Each is read from its variable when set, else from the full or
// the CI column depending on TXOUTBOX_FAULT_FULL.
type knob struct {
	env      string
	ci, full int
}

var (
	// kill_test.go
	killEntries    = knob{"TXOUTBOX_FAULT_KILL_ENTRIES", 3000, 20000}
	killCount      = knob{"TXOUTBOX_FAULT_KILLS", 8, 30}
	killExtWorkers = knob{"TXOUTBOX_FAULT_KILL_EXT_WORKERS", 1, 1} // the duplicate bound is workers × kills
	// compete_test.go
	competeRelays  = knob{"TXOUTBOX_FAULT_RELAYS", 4, 4}
	competeEntries = knob{"TXOUTBOX_FAULT_COMPETE_ENTRIES", 2000, 20000}
	// poison_test.go
	poisonHealthy = knob{"TXOUTBOX_FAULT_POISON_HEALTHY", 2000, 20000}
	poisonPerKind = knob{"TXOUTBOX_FAULT_POISON_PER_KIND", 10, 100}
	// bounds_test.go
	drainEntries = knob{"TXOUTBOX_FAULT_DRAIN_ENTRIES", 20000, 1000000}
	// nats_test.go
	natsEntries = knob{"TXOUTBOX_FAULT_NATS_ENTRIES", 3000, 20000}
	natsKills   = knob{"TXOUTBOX_FAULT_NATS_KILLS", 8, 30}
	// rabbit_test.go
	rabbitEntries = knob{"TXOUTBOX_FAULT_RABBIT_ENTRIES", 3000, 20000}
	rabbitKills   = knob{"TXOUTBOX_FAULT_RABBIT_KILLS", 8, 30}
	// cut_test.go
	dropRounds = knob{"TXOUTBOX_FAULT_DROP_ROUNDS", 6, 30}
)

func fullScale() bool { return os.Getenv("TXOUTBOX_FAULT_FULL") == "1" }

// Time scale. The suite's leases, heartbeats and the deadlines of its waits
// are tuned for a machine whose cores are free; on a loaded one (CI next to
// other jobs, a laptop building something else) a relay may be scheduled
// too late to renew a lease it holds, which the tests count as a fault they
// did not inject. So every such duration is multiplied by the time scale:
// TXOUTBOX_FAULT_TIME_SCALE when set (a number from 1 to 1000), else half
// the load average per CPU when the test binary starts, between 1 and
// maxTimeScale. The assertions stay the same relative to the scaled
// durations ("within a heartbeat of the lease's end"); only the clock they
// are measured by is slower. Every test that uses it logs the scale it got.
//
// The waits themselves are conditions, so the scale is a margin, not what
// makes the tests pass: the cut tests passed 16 runs of 16 at scale 1 on 2
// CPUs with a load average of 9 to 20 (stress-ng --cpu 6 beside them), and
// 10 of 10 at the automatic scale.
const (
	timeScaleEnv = "TXOUTBOX_FAULT_TIME_SCALE"
	maxTimeScale = 4
)

var timeScaleOnce = sync.OnceValues(func() (float64, string) {
	if s := os.Getenv(timeScaleEnv); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 1 || f > 1000 {
			return 1, fmt.Sprintf("%s=%q is not a number from 1 to 1000; using 1", timeScaleEnv, s)
		}
		return f, fmt.Sprintf("%s=%s", timeScaleEnv, s)
	}
	load, err := loadAverage()
	if err != nil {
		return 1, fmt.Sprintf("the load average is unknown (%v); set %s to scale", err, timeScaleEnv)
	}
	f := min(maxTimeScale, max(1, load/float64(2*runtime.NumCPU())))
	f = math.Round(f*10) / 10
	return f, fmt.Sprintf("load average %.1f on %d CPUs; %s overrides", load, runtime.NumCPU(), timeScaleEnv)
})

// timeScale returns the factor by which the suite's timing is stretched.
func timeScale() float64 {
	f, _ := timeScaleOnce()
	return f
}

// scaled returns d stretched by the time scale.
func scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * timeScale())
}

// logTimeScale logs the time scale and where it came from.
func logTimeScale(t testing.TB) {
	t.Helper()
	f, why := timeScaleOnce()
	t.Logf("time scale %.1f (%s)", f, why)
}

// loadAverage returns the one-minute load average (Linux).
func loadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), " ")
	return strconv.ParseFloat(first, 64)
}

func (k knob) get(t testing.TB) int {
	t.Helper()
	if s := os.Getenv(k.env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", k.env, s)
		}
		return n
	}
	if fullScale() {
		return k.full
	}
	return k.ci
}

// seededRand returns the test's random source: TXOUTBOX_FAULT_SEED (or the
// clock) mixed with the test's name, so each test's choices are
// reproducible on their own. It logs how to reproduce them.
func seededRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("TXOUTBOX_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("TXOUTBOX_FAULT_SEED=%q: %v", s, err)
		}
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Name()))
	t.Logf("random choices from TXOUTBOX_FAULT_SEED=%d", seed)
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}
