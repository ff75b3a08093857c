package rabbitmq_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/rabbittest"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// TestMain fails the package's tests if any goroutine (a relay, a pool, an
// AMQP connection) outlives them, after stopping the throwaway PostgreSQL
// server and RabbitMQ container that the tests may have started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(rabbittest.WithCleanup(outboxtest.WithCleanup(m)))
}
