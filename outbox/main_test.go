package outbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine (a pool, a LISTEN
// connection, a database/sql opener) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
