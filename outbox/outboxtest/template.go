package outboxtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/migrations"
)

const (
	// templatePrefix starts the name of every ready template database.
	templatePrefix = "txoutbox_tmpl_"
	// wipPrefix starts the name of a template being built. Only a rename
	// to templatePrefix+hash publishes it, so a crash part-way through
	// leaves a wip database that the next builder drops, never a
	// half-migrated template.
	wipPrefix = "txoutbox_tmplwip_"
	// testPrefix starts the name of every per-test database.
	testPrefix = "txoutbox_t_"

	// templateFormat changes whenever the way templates are built changes,
	// so that templates built the old way are not reused.
	templateFormat = "outboxtest template v1"

	// templateLockID is the advisory lock (on the admin database) that
	// serialises template creation across test processes. It is an
	// arbitrary constant ("txoutbx" in ASCII).
	templateLockID int64 = 0x74786f7574627800

	// templateTimeout bounds waiting for the lock plus building a template.
	templateTimeout = 5 * time.Minute
)

// templates records, per test process, the templates already ensured on a
// server. It is the package's only mutable state; see the package comment.
var templates struct {
	sync.Mutex
	m map[string]*templateState
}

// templateState is the outcome of ensuring one template, shared by every
// test in the process that needs it.
type templateState struct {
	once sync.Once
	err  error
}

// templateName returns the name of the template for txoutbox's embedded
// migrations plus the application's key.
func templateName(key string) (string, error) {
	h := sha256.New()
	h.Write([]byte(templateFormat))
	h.Write([]byte{0})
	fsys := migrations.FS()
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("outboxtest: read embedded migrations: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return "", fmt.Errorf("outboxtest: read embedded migration %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "key\x00%s", key)
	return templatePrefix + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// ensureTemplate makes sure template name exists on srv, creating it at most
// once per process. Every caller waits for the first one's outcome.
func ensureTemplate(srv server, name string, opts Options) error {
	templates.Lock()
	if templates.m == nil {
		templates.m = make(map[string]*templateState)
	}
	k := srv.adminURL + "\x00" + name
	st := templates.m[k]
	if st == nil {
		st = &templateState{}
		templates.m[k] = st
	}
	templates.Unlock()

	st.once.Do(func() {
		// Not the caller's test context: the outcome is shared by every
		// test in the process, whichever test happens to arrive first.
		ctx, cancel := context.WithTimeout(context.Background(), templateTimeout)
		defer cancel()
		st.err = buildTemplate(ctx, srv, name, opts)
	})
	return st.err
}

// buildTemplate creates and migrates template name on srv unless it exists.
// It holds an advisory lock on the admin database throughout, so concurrent
// test processes build each template once.
func buildTemplate(ctx context.Context, srv server, name string, opts Options) (err error) {
	admin, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		return fmt.Errorf("outboxtest: connect to %s: %w", srv.addr, err)
	}
	defer func() {
		// Closing the session also releases the advisory lock.
		if cerr := admin.Close(context.Background()); cerr != nil && err == nil {
			err = fmt.Errorf("outboxtest: close admin connection: %w", cerr)
		}
	}()

	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockID); err != nil {
		return fmt.Errorf("outboxtest: lock template creation: %w", err)
	}
	defer func() {
		if _, uerr := admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockID); uerr != nil && err == nil {
			err = fmt.Errorf("outboxtest: unlock template creation: %w", uerr)
		}
	}()

	exists, err := databaseExists(ctx, admin, name)
	if err != nil {
		return err
	}
	if exists {
		return nil
	}

	wip := wipPrefix + name[len(templatePrefix):]
	if err := dropWIP(ctx, admin, wip); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(wip)); err != nil {
		return fmt.Errorf("outboxtest: create database %s: %w", wip, err)
	}
	if err := migrateDatabase(ctx, srv, wip, opts); err != nil {
		// Leave nothing behind; the next builder would drop it anyway.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return errors.Join(err, dropWIP(cctx, admin, wip))
	}
	// Nobody may connect to a template: a connection would make CREATE
	// DATABASE ... TEMPLATE fail for every test that runs meanwhile.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(wip)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("outboxtest: mark %s as template: %w", wip, err)
	}
	err = retryInUse(ctx, func() error {
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", wip); err != nil {
			return err
		}
		_, err := admin.Exec(ctx, "ALTER DATABASE "+ident(wip)+" RENAME TO "+ident(name))
		return err
	})
	if err != nil {
		return fmt.Errorf("outboxtest: publish template %s: %w", name, err)
	}
	return nil
}

// migrateDatabase applies txoutbox's migrations, then opts.Migrate, to
// database dbname, and closes every connection it opened.
func migrateDatabase(ctx context.Context, srv server, dbname string, opts Options) error {
	u, err := databaseURL(srv.adminURL, dbname)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return fmt.Errorf("outboxtest: parse connection string: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		return fmt.Errorf("outboxtest: migrate template: %w", err)
	}
	if opts.Migrate != nil {
		if err := opts.Migrate(ctx, db); err != nil {
			return fmt.Errorf("outboxtest: Options.Migrate on template: %w", err)
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("outboxtest: close template connections: %w", err)
	}
	return nil
}

// dropWIP drops a template left half-built by a crashed process, if any.
func dropWIP(ctx context.Context, admin *pgx.Conn, wip string) error {
	exists, err := databaseExists(ctx, admin, wip)
	if err != nil || !exists {
		return err
	}
	// A template cannot be dropped; the crash may have come after marking.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident(wip)+" WITH IS_TEMPLATE false"); err != nil {
		return fmt.Errorf("outboxtest: unmark leftover %s: %w", wip, err)
	}
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(wip)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("outboxtest: drop leftover %s: %w", wip, err)
	}
	return nil
}

func databaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("outboxtest: look up database %s: %w", name, err)
	}
	return exists, nil
}

// createDatabase creates a new database from template tmpl and returns its
// name.
func createDatabase(ctx context.Context, srv server, tmpl string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("outboxtest: random database name: %w", err)
	}
	name := testPrefix + hex.EncodeToString(b[:])

	admin, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		return "", fmt.Errorf("outboxtest: connect to %s: %w", srv.addr, err)
	}
	defer admin.Close(context.Background())

	err = retryInUse(ctx, func() error {
		_, err := admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tmpl))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("outboxtest: create database %s from template %s: %w", name, tmpl, err)
	}
	return name, nil
}

// dropDatabase drops database name, disconnecting anyone still connected.
func dropDatabase(ctx context.Context, srv server, name string) error {
	admin, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		return fmt.Errorf("outboxtest: connect to %s: %w", srv.addr, err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("outboxtest: drop database %s: %w", name, err)
	}
	return nil
}

// retryInUse runs f until it does not fail with "database is being accessed
// by other users" (SQLSTATE 55006, object_in_use), a handful of times with
// a growing pause. The condition is transient: it comes from sessions that
// are still closing.
func retryInUse(ctx context.Context, f func() error) error {
	const attempts = 8
	pause := 20 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		err = f()
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
		pause *= 2
	}
	return fmt.Errorf("still in use after %d attempts: %w", attempts, err)
}

// ident quotes a database name for use in SQL.
func ident(name string) string {
	return pgx.Identifier{name}.Sanitize()
}
