package outboxtest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestMain stops the throwaway server, if the tests started one, before
// goleak looks for goroutines that outlived the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(outboxtest.WithCleanup(m))
}
