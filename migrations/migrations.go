package migrations

import (
	"bufio"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// VersionTable is the table in which txoutbox records which of its migrations
// have been applied. It differs from goose's default so that an application's
// own goose migrations keep their own history.
const VersionTable = "txoutbox_goose_version"

//go:embed sql/*.sql
var embedded embed.FS

// FS returns the embedded migration files, named as goose expects
// (NNNNN_description.sql), at the root of the returned file system.
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		// fs.Sub only fails for an invalid path; "sql" is valid.
		return embedded
	}
	return sub
}

// Result describes one migration applied or rolled back.
type Result struct {
	Version  int64
	Source   string
	Duration string
}

// MigrationStatus describes whether one migration is applied.
type MigrationStatus struct {
	Version int64
	Source  string
	Applied bool
}

// provider builds a goose Provider for db with our version table and a
// session lock, so that concurrent migrators wait for each other.
func provider(db *sql.DB) (*goose.Provider, error) {
	if db == nil {
		return nil, errors.New("migrations: nil *sql.DB")
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations: session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS(),
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(locker),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

func results(rs []*goose.MigrationResult) []Result {
	out := make([]Result, 0, len(rs))
	for _, r := range rs {
		out = append(out, Result{Version: r.Source.Version, Source: path.Base(r.Source.Path), Duration: r.Duration.String()})
	}
	return out
}

// Up applies every pending migration. It is safe to call on every start of
// every process: applied migrations are skipped, and concurrent callers wait
// on an advisory lock.
func Up(ctx context.Context, db *sql.DB) ([]Result, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	rs, err := p.Up(ctx)
	if err != nil {
		return results(rs), fmt.Errorf("migrations: up: %w", err)
	}
	return results(rs), nil
}

// Down rolls back the most recently applied migration.
func Down(ctx context.Context, db *sql.DB) (*Result, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	r, err := p.Down(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: down: %w", err)
	}
	res := results([]*goose.MigrationResult{r})
	return &res[0], nil
}

// Status reports every known migration and whether it is applied.
func Status(ctx context.Context, db *sql.DB) ([]MigrationStatus, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationStatus{
			Version: s.Source.Version,
			Source:  path.Base(s.Source.Path),
			Applied: s.State == goose.StateApplied,
		})
	}
	return out, nil
}

// Direction selects which half of a migration [SQL] returns.
type Direction int

const (
	// DirectionUp selects the statements that apply a migration.
	DirectionUp Direction = iota
	// DirectionDown selects the statements that roll a migration back.
	DirectionDown
)

// Script is the plain SQL of one migration in one direction.
type Script struct {
	Version int64
	Name    string
	SQL     string
}

// SQL returns the plain SQL of every embedded migration for dir, in the
// order to apply them (ascending for up, descending for down), with goose's
// annotations removed. Teams on other migration tools copy these scripts.
// Each script is meant to run in one transaction.
func SQL(dir Direction) ([]Script, error) {
	entries, err := fs.ReadDir(FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []Script
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		var version int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &version); err != nil {
			return nil, fmt.Errorf("migrations: file %q does not start with a version: %w", e.Name(), err)
		}
		raw, err := fs.ReadFile(FS(), e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		out = append(out, Script{Version: version, Name: e.Name(), SQL: section(string(raw), dir)})
	}
	sort.Slice(out, func(i, j int) bool {
		if dir == DirectionDown {
			return out[i].Version > out[j].Version
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// section extracts the up or down half of a goose SQL file and drops goose's
// own annotation lines.
func section(src string, dir Direction) string {
	want := "+goose Up"
	if dir == DirectionDown {
		want = "+goose Down"
	}
	var b strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "-- +goose") {
			switch {
			case strings.HasPrefix(trimmed, "-- "+want):
				in = true
			case strings.HasPrefix(trimmed, "-- +goose Up"), strings.HasPrefix(trimmed, "-- +goose Down"):
				in = false
			}
			continue
		}
		if in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return strings.TrimSpace(b.String()) + "\n"
}
