package nats_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestMain fails the package's tests if any goroutine (a relay, a pool, a
// NATS connection or in-process server) outlives them, after stopping the
// throwaway PostgreSQL server that outboxtest may have started for them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(outboxtest.WithCleanup(m))
}
