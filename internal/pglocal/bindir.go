package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries is returned (wrapped) when no PostgreSQL server binaries
// are found. Its message says what to install.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb and postgres) found: " +
	"install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; " +
	"macOS: brew install postgresql@17) so that pg_config --bindir names a directory with initdb and postgres")

// Finder finds PostgreSQL server binaries. The zero value searches the
// usual places; see [Finder.BinDir].
type Finder struct {
	// PgConfig is the pg_config to ask. "" means "pg_config" looked up on
	// PATH.
	PgConfig string

	// Globs are searched after pg_config, in order, the newest major
	// version of each first. Nil means the usual places: the Debian and
	// Ubuntu layout (/usr/lib/postgresql/*/bin), then Homebrew's and
	// Postgres.app's.
	Globs []string
}

// defaultGlobs are the usual places of server binaries.
func defaultGlobs() []string {
	return []string{
		"/usr/lib/postgresql/*/bin",
		"/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin",
		"/Applications/Postgres.app/Contents/Versions/*/bin",
	}
}

// BinDir returns a directory holding initdb and postgres: the one
// pg_config --bindir names, else the newest match of the globs (by
// PostgreSQL major version). The error wraps [ErrNoBinaries] and says what
// was searched.
func (f Finder) BinDir(ctx context.Context) (string, error) {
	var tried []string

	pgConfig := f.PgConfig
	if pgConfig == "" {
		pgConfig = "pg_config"
	}
	if path, err := exec.LookPath(pgConfig); err != nil {
		tried = append(tried, fmt.Sprintf("%s is not on PATH", pgConfig))
	} else {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(ctx, path, "--bindir").Output()
		cancel()
		dir := strings.TrimSpace(string(out))
		switch {
		case err != nil:
			tried = append(tried, fmt.Sprintf("%s --bindir failed: %v", path, err))
		case hasServer(dir) == nil:
			return dir, nil
		default:
			// Debian's libpq-dev ships pg_config without the server.
			tried = append(tried, fmt.Sprintf("%s --bindir names %s: %v", path, dir, hasServer(dir)))
		}
	}

	globs := f.Globs
	if globs == nil {
		globs = defaultGlobs()
	}
	for _, g := range globs {
		matches, err := filepath.Glob(g)
		if err != nil {
			return "", fmt.Errorf("pglocal: bad glob %q: %w", g, err)
		}
		sortByVersionDesc(matches)
		for _, dir := range matches {
			if hasServer(dir) == nil {
				return dir, nil
			}
		}
		tried = append(tried, fmt.Sprintf("no %s has initdb and postgres", g))
	}
	return "", fmt.Errorf("pglocal: %w (searched: %s)", ErrNoBinaries, strings.Join(tried, "; "))
}

// hasServer checks that dir holds executable initdb and postgres.
func hasServer(dir string) error {
	if dir == "" {
		return errors.New("empty directory")
	}
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("no %s", name)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", name)
		}
	}
	return nil
}

// sortByVersionDesc orders paths like /usr/lib/postgresql/15/bin or
// /opt/homebrew/opt/postgresql@17/bin by the last path element that is a
// number (after any "@"), highest first; others sort last, by name.
func sortByVersionDesc(paths []string) {
	version := func(p string) int {
		els := strings.Split(filepath.ToSlash(p), "/")
		for i := len(els) - 1; i >= 0; i-- {
			el := els[i]
			if at := strings.LastIndexByte(el, '@'); at >= 0 {
				el = el[at+1:]
			}
			if n, err := strconv.Atoi(el); err == nil {
				return n
			}
		}
		return -1
	}
	sort.SliceStable(paths, func(i, j int) bool {
		vi, vj := version(paths[i]), version(paths[j])
		if vi != vj {
			return vi > vj
		}
		return paths[i] < paths[j]
	})
}
