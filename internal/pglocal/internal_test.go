package pglocal

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeBinDir makes a directory with executable initdb and postgres stubs.
func fakeBinDir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFinderAsksPgConfig(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bin := fakeBinDir(t, filepath.Join(root, "server", "bin"))
	pgConfig := filepath.Join(root, "pg_config")
	script := "#!/bin/sh\n[ \"$1\" = --bindir ] && echo " + bin + "\n"
	if err := os.WriteFile(pgConfig, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Finder{PgConfig: pgConfig, Globs: []string{}}.BinDir(context.Background())
	if err != nil || got != bin {
		t.Errorf("BinDir = %q, %v; want %q", got, err, bin)
	}
}

func TestFinderFallsBackToNewestGlobMatch(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// pg_config without the server, as Debian's libpq-dev ships it.
	clientOnly := filepath.Join(root, "client", "bin")
	if err := os.MkdirAll(clientOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	pgConfig := filepath.Join(root, "pg_config")
	if err := os.WriteFile(pgConfig, []byte("#!/bin/sh\necho "+clientOnly+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"9", "15", "13"} {
		fakeBinDir(t, filepath.Join(root, "lib", v, "bin"))
	}
	// 16 lacks the server binaries.
	if err := os.MkdirAll(filepath.Join(root, "lib", "16", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Finder{PgConfig: pgConfig, Globs: []string{filepath.Join(root, "lib", "*", "bin")}}.BinDir(context.Background())
	if want := filepath.Join(root, "lib", "15", "bin"); err != nil || got != want {
		t.Errorf("BinDir = %q, %v; want %q", got, err, want)
	}
}

func TestFinderSaysWhatToInstall(t *testing.T) {
	t.Parallel()
	_, err := Finder{PgConfig: "txoutbox-no-such-pg_config", Globs: []string{filepath.Join(t.TempDir(), "*", "bin")}}.BinDir(context.Background())
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "brew install", "pg_config --bindir", "txoutbox-no-such-pg_config is not on PATH", "has initdb and postgres"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
}

func TestSortByVersionDesc(t *testing.T) {
	t.Parallel()
	got := []string{"/usr/lib/postgresql/9/bin", "/opt/homebrew/opt/postgresql@17/bin", "/x/latest/bin", "/usr/lib/postgresql/15/bin"}
	sortByVersionDesc(got)
	want := []string{"/opt/homebrew/opt/postgresql@17/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/9/bin", "/x/latest/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestServerArgs(t *testing.T) {
	t.Parallel()
	args := strings.Join(serverArgs("/d/data", "/d", 5499, Options{Settings: map[string]string{"fsync": "on", "work_mem": "8MB"}}), " ")
	for _, want := range []string{"-D /d/data", "-c listen_addresses=127.0.0.1", "-c port=5499", "-c unix_socket_directories=/d", "-c fsync=off"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
	// Settings come last, so they win.
	if !strings.HasSuffix(args, "-c fsync=on -c work_mem=8MB") {
		t.Errorf("settings not last: %s", args)
	}
	long := "/" + strings.Repeat("x", 100)
	if args := strings.Join(serverArgs(long+"/data", long, 5499, Options{Durable: true}), " "); !strings.Contains(args, "unix_socket_directories= ") || strings.Contains(args, "fsync") {
		t.Errorf("long socket path or Durable: %s", args)
	}
}

func TestSweepRemovesOnlyAbandonedDirectories(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	// The pid of a process that has exited.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid

	mk := func(name, owner, postmaster string, age time.Duration) string {
		d := filepath.Join(tmp, dirPrefix+name)
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(owner+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if postmaster != "" {
			if err := os.WriteFile(filepath.Join(d, "data", "postmaster.pid"), []byte(postmaster+"\n"+d+"/data\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
		return d
	}
	self := strconv.Itoa(os.Getpid())
	gone := mk("gone", strconv.Itoa(dead), "", 0)
	goneServerGone := mk("gone-server-gone", strconv.Itoa(dead), strconv.Itoa(dead), 0)
	live := mk("live", self, "", time.Hour)
	serverLives := mk("server-lives", strconv.Itoa(dead), self, time.Hour)
	fresh := mk("fresh", "", "", 0)
	oldNoOwner := mk("old-no-owner", "", "", time.Hour)
	garbage := mk("garbage", "not-a-pid", "", time.Hour)

	sweep(tmp)
	for d, wantKept := range map[string]bool{
		gone: false, goneServerGone: false, oldNoOwner: false,
		live: true, serverLives: true, fresh: true, garbage: true,
	} {
		_, err := os.Stat(d)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept=%v, want %v", filepath.Base(d), kept, wantKept)
		}
	}
}
