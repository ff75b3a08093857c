//go:build linux

package outboxtest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/txoutbox/txoutbox/internal/pglocal"
	"github.com/txoutbox/txoutbox/internal/throwaway"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// childEnv, when set, makes TestChild do its part in a child process of
// TestNothingLeftBehind: "pass", "fail" (t.Fatal) or "crash" (panic).
const childEnv = "TXOUTBOX_OUTBOXTEST_CHILD"

// TestChild is the test that TestNothingLeftBehind runs in child
// processes. Elsewhere it does nothing (and does not skip, so that a run
// that must skip nothing can check for skips).
func TestChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Log("does something only in a child process of TestNothingLeftBehind")
		return
	}
	db := outboxtest.New(t)
	exec(t, db.Pool, `INSERT INTO outbox_entries (topic) VALUES ('child')`)
	switch mode {
	case "fail":
		t.Fatal("failing on purpose")
	case "crash":
		panic("crashing on purpose")
	}
}

// TestNothingLeftBehind runs a test binary that starts a throwaway server
// and then fails, one that crashes (no cleanup code runs at all) and one
// that passes, and checks that no server process, temporary directory or
// container is left: the failing run cleans up after itself through Main,
// and the passing run removes what the crashed one left.
func TestNothingLeftBehind(t *testing.T) {
	t.Parallel()
	// A forced source is the only one checked, and must work; otherwise
	// each is checked where it is available.
	forced := strings.TrimSpace(os.Getenv("TXOUTBOX_TEST_SOURCE"))
	kinds := []throwaway.Kind{throwaway.Local, throwaway.Container}
	switch forced {
	case "":
	case "url":
		t.Log("TXOUTBOX_TEST_SOURCE=url: no throwaway server to check")
		return
	default:
		kinds = []throwaway.Kind{throwaway.Kind(forced)}
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			var src throwaway.Source = throwaway.LocalSource(pglocal.Finder{})
			if kind == throwaway.Container {
				src = throwaway.ContainerSource(os.Getenv("TXOUTBOX_TEST_POSTGRES_IMAGE"))
			}
			if err := src.Probe(context.Background()); err != nil {
				if forced != "" {
					t.Fatalf("TXOUTBOX_TEST_SOURCE=%s, but %v", forced, err)
				}
				t.Skipf("%s source unavailable here: %v", kind, err)
			}
			checkNothingLeftBehind(t, kind)
		})
	}
}

func checkNothingLeftBehind(t *testing.T, kind throwaway.Kind) {
	tmp, err := os.MkdirTemp("", "txoutbox-leftover-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // reachable by the postgres OS user
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })

	run := func(mode string, wantCode int, wantOut string) (pid int) {
		t.Helper()
		cmd := osexec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TXOUTBOX_TEST_DATABASE_URL=") && !strings.HasPrefix(kv, "TMPDIR=") &&
				!strings.HasPrefix(kv, "TXOUTBOX_TEST_SOURCE=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, childEnv+"="+mode, "TXOUTBOX_TEST_SOURCE="+string(kind), "TMPDIR="+tmp)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		var exitErr *osexec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if kind == throwaway.Container && mode == "pass" && strings.Contains(out.String(), throwaway.ErrImageUnavailable.Error()) &&
			os.Getenv("TXOUTBOX_TEST_SOURCE") == "" {
			t.Skipf("a Docker engine answers, but the image is not available:\n%s", out.String())
		}
		if code != wantCode || !strings.Contains(out.String(), wantOut) || !strings.Contains(out.String(), "(server: a ") {
			t.Fatalf("child %s: exit code %d, want %d with %q and the server it used; output:\n%s", mode, code, wantCode, wantOut, out.String())
		}
		t.Logf("child %s: exit code %d as expected", mode, code)
		return cmd.Process.Pid
	}

	// The passing run first, so that the container path skips early
	// when the image cannot be had.
	passed := run("pass", 0, "--- PASS: TestChild")
	requireNoLeftovers(t, kind, tmp, passed)
	failed := run("fail", 1, "failing on purpose")
	requireNoLeftovers(t, kind, tmp, failed)

	crashed := run("crash", 2, "crashing on purpose")
	if kind == throwaway.Local {
		// The server dies with its process; its directory stays until the
		// next start.
		waitNoServerIn(t, tmp)
	}
	run("pass", 0, "--- PASS: TestChild")
	requireNoLeftovers(t, kind, tmp, crashed)
}

// requireNoLeftovers checks that the child with pid left nothing.
func requireNoLeftovers(t *testing.T, kind throwaway.Kind, tmp string, pid int) {
	t.Helper()
	if kind == throwaway.Local {
		waitNoServerIn(t, tmp)
		left, err := filepath.Glob(filepath.Join(tmp, "txoutbox-pglocal-*"))
		if err != nil || len(left) != 0 {
			t.Errorf("cluster directories left behind: %v (%v)", left, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", throwaway.OwnerLabel)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Items {
		if strings.HasSuffix(c.Labels[throwaway.OwnerLabel], "/"+strconv.Itoa(pid)) {
			t.Errorf("container %.12s (%s) of process %d left behind", c.ID, c.State, pid)
		}
	}
}

// waitNoServerIn waits until no process runs from a directory under tmp.
func waitNoServerIn(t *testing.T, tmp string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := processesMentioning(tmp)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running from %s: %v", tmp, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesMentioning returns the live processes whose command line
// mentions s.
func processesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && bytes.HasPrefix(stat[i:], []byte(") Z")) {
				continue // a zombie: exited, not yet reaped
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
