package migrations_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestMain checks for leaked goroutines after stopping the throwaway
// PostgreSQL server that outboxtest may have started for the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(outboxtest.WithCleanup(m))
}
