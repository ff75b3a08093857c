package schedule_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	_ "time/tzdata" // Europe/Berlin and friends, whatever the machine has

	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// helperEnv, when set to a database URL, turns the test binary into the
// second process of TestFleetFiresEachPeriodOnce: it runs fleet members
// helperMembers against that database once the parent says "go" on
// standard input, reports what they fired, and exits.
const helperEnv = "TXOUTBOX_SCHEDULE_HELPER_URL"

// helperMembers are the fleet members the helper process runs.
var helperMembers = []int{2, 3}

func TestMain(m *testing.M) {
	if url := os.Getenv(helperEnv); url != "" {
		if err := helperProcess(url); err != nil {
			fmt.Fprintln(os.Stderr, "schedule helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	outboxtest.Main(m)
}

// helperProcess waits for "go" on standard input, then runs its fleet
// members to the end and prints one "member N fired M" line each.
func helperProcess(url string) error {
	fmt.Println("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "go" {
		return fmt.Errorf("waiting for go: %q, %v", line, err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, len(helperMembers))
	fired := make([]int, len(helperMembers))
	for i, id := range helperMembers {
		wg.Go(func() { fired[i], errs[i] = runFleetMember(ctx, url, id) })
	}
	wg.Wait()
	for i, id := range helperMembers {
		fmt.Printf("member %d fired %d\n", id, fired[i])
	}
	return errors.Join(errs...)
}
