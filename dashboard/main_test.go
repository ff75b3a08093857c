package dashboard_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { outboxtest.Main(m) }
