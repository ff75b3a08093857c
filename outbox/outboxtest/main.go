package outboxtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// cleanupTimeout bounds stopping the process-wide servers after the tests.
const cleanupTimeout = 2 * time.Minute

// TestingM is what [Main] and [WithCleanup] need of a *testing.M.
type TestingM interface {
	Run() (code int)
}

// Main runs the tests of a package, stops the throwaway server (container
// or local cluster) that [New] started for them, if any, and exits with the
// tests' exit code, as a TestMain must. Call it from the package's
// TestMain:
//
//	func TestMain(m *testing.M) { outboxtest.Main(m) }
//
// It stops the server whether or not the tests pass. If stopping fails, it
// says why on standard error and exits non-zero even when the tests passed.
// Main calls os.Exit and so never returns; to combine it with another
// TestMain helper, use [WithCleanup].
//
// Without Main, nothing stops a throwaway server when the tests end: a
// local cluster stops when the test process exits (on Linux) and the next
// run removes its directory, and a container is removed by
// testcontainers-go's Ryuk, unless TESTCONTAINERS_RYUK_DISABLED is set, or
// else by the next test binary that starts a container. New logs a warning
// when it starts a server outside Main.
func Main(m TestingM) {
	os.Exit(WithCleanup(m).Run())
}

// WithCleanup returns m with a Run that runs m's tests and then stops the
// throwaway server, like [Main] but without exiting, for TestMain helpers
// that take a *testing.M-like value and exit themselves. For example, with
// go.uber.org/goleak, whose leak check then runs after the server is
// stopped:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(outboxtest.WithCleanup(m)) }
func WithCleanup(m TestingM) TestingM {
	return cleanupM{m: m, res: processResolver, stderr: os.Stderr}
}

type cleanupM struct {
	m      TestingM
	res    *resolver
	stderr io.Writer // where a failed cleanup is reported
}

// Run runs the tests, then stops the servers started meanwhile.
func (c cleanupM) Run() int {
	c.res.mainActive.Store(true)
	defer c.res.mainActive.Store(false)
	code := c.m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := c.res.close(ctx); err != nil {
		fmt.Fprintf(c.stderr, "outboxtest: after the tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
