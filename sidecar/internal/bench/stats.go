package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The statistics of the outbox tables cover every table whose name starts
// with outbox_ in a schema of the search path, ordinary or partitioned,
// and every partition below one, whatever its name: nothing here depends
// on which tables the schema has or on their columns.

// outboxRelations is the head of a query: the CTE rels(relid) of those
// tables and partitions. pg_partition_tree lists a partitioned table's
// tree (itself included) and nothing for an ordinary table.
const outboxRelations = `WITH named AS (
	SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE starts_with(c.relname, 'outbox_') AND c.relkind IN ('r', 'p')
		AND n.nspname = ANY (current_schemas(false))
), rels AS (
	SELECT oid AS relid FROM named
	UNION
	SELECT t.relid FROM named, pg_partition_tree(named.oid) t
)
`

// tableStatsQuery sums the cumulative statistics of the outbox tables.
// n_tup_upd counts HOT updates too (n_tup_hot_upd is a part of it, not
// added). A partitioned table has no rows and no counts of its own.
const tableStatsQuery = outboxRelations + `SELECT
	coalesce(sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del), 0)::bigint,
	coalesce(sum(s.n_dead_tup), 0)::bigint,
	coalesce(sum(s.vacuum_count + s.autovacuum_count), 0)::bigint,
	coalesce(sum(pg_total_relation_size(rels.relid)), 0)::bigint
FROM rels LEFT JOIN pg_stat_user_tables s USING (relid)`

// outboxTablesQuery names the outbox tables a reader scans, quoted: the
// named tables that are not partitions (a scan of a partitioned table
// reads its partitions).
const outboxTablesQuery = `SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE starts_with(c.relname, 'outbox_') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
	AND n.nspname = ANY (current_schemas(false))
ORDER BY 1`

// xminAgeQuery is the age, in transactions, of the oldest transaction id
// or snapshot xmin that another session of this database holds: how far
// behind it holds the horizon VACUUM may clean up to.
const xminAgeQuery = `SELECT coalesce(max(greatest(age(backend_xid), age(backend_xmin))), 0)::bigint
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`

// walInsertQuery is the WAL insert position in bytes from 0/0. The insert
// position, not pg_current_wal_lsn (the write position, which lags behind
// WAL still in the server's buffers), counts every byte generated.
const walInsertQuery = `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint`

// othersQuery counts the other sessions of the bench (by application
// name) in this database, and gives the server's version number.
const othersQuery = `SELECT count(*), current_setting('server_version_num')::int FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`

// Waiting for the statistics.
const (
	// statsTimeout bounds the wait for the bench's other sessions to end,
	// and for the counts to settle: a hang guard.
	statsTimeout = 30 * time.Second
	// statsPoll is how often the sessions are counted meanwhile.
	statsPoll = 10 * time.Millisecond
	// collectorInterval is how long the counts must stay the same on a
	// server before 15, whose statistics collector publishes them at most
	// every 500 ms.
	collectorInterval = 600 * time.Millisecond
)

// tableStats are sums over the outbox tables.
type tableStats struct {
	writes  int64 // rows inserted, updated and deleted
	dead    int64 // dead row versions (n_dead_tup)
	vacuums int64 // VACUUMs and autovacuums done
	bytes   int64 // pg_total_relation_size: heap, indexes, TOAST
}

// querier is a pool or a connection.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readTableStats reads the statistics as the server has them now. Other
// sessions report theirs asynchronously: see settledTableStats.
func readTableStats(ctx context.Context, q querier) (tableStats, error) {
	var s tableStats
	if err := q.QueryRow(ctx, tableStatsQuery).Scan(&s.writes, &s.dead, &s.vacuums, &s.bytes); err != nil {
		return s, fmt.Errorf("reading the outbox tables' statistics: %w", err)
	}
	return s, nil
}

// walPosition returns the WAL insert position in bytes.
func walPosition(ctx context.Context, q querier) (int64, error) {
	var pos int64
	if err := q.QueryRow(ctx, walInsertQuery).Scan(&pos); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return pos, nil
}

// outboxTables returns the quoted names of the tables a reader scans.
func outboxTables(ctx context.Context, q *pgx.Conn) ([]string, error) {
	rows, err := q.Query(ctx, outboxTablesQuery)
	if err != nil {
		return nil, fmt.Errorf("listing the outbox tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing the outbox tables: %w", err)
	}
	return names, nil
}

// settledTableStats reads the statistics once every session of the bench
// has reported what it did. A backend reports its counts at the end of a
// transaction at most once a second, else within 10 s of going idle, but
// always when it exits (PostgreSQL 15 and later write them to shared
// memory before the session leaves pg_stat_activity). So it closes the
// idle connections of both pools, waits until no other session with the
// bench's application name (the pools', and the relay processes') is
// left in the database, and reads. Before PostgreSQL 15 the counts pass
// through the statistics collector, so it also waits until they stay the
// same for collectorInterval. After statsTimeout it warns and reads what
// there is.
func (r *Runner) settledTableStats(ctx context.Context) (tableStats, error) {
	r.app.Reset()
	r.relayPool.Reset()
	conn, err := r.app.Acquire(ctx)
	if err != nil {
		return tableStats{}, fmt.Errorf("reading statistics: %w", err)
	}
	defer conn.Release()
	deadline := time.Now().Add(statsTimeout)
	for {
		var others, version int
		err := conn.QueryRow(ctx, othersQuery, AppName).Scan(&others, &version)
		if err != nil {
			return tableStats{}, fmt.Errorf("counting the bench's sessions: %w", err)
		}
		if others == 0 {
			if version < 150000 {
				return r.stableTableStats(ctx, conn, deadline)
			}
			return readTableStats(ctx, conn)
		}
		if time.Now().After(deadline) {
			r.log.Warn("bench: sessions of the bench still connected; row write counts may be incomplete", "sessions", others, "waited", statsTimeout)
			return readTableStats(ctx, conn)
		}
		if err := sleepCtx(ctx, statsPoll); err != nil {
			return tableStats{}, err
		}
	}
}

// stableTableStats reads the statistics until two readings
// collectorInterval apart agree, or until deadline.
func (r *Runner) stableTableStats(ctx context.Context, q querier, deadline time.Time) (tableStats, error) {
	last, err := readTableStats(ctx, q)
	if err != nil {
		return last, err
	}
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, collectorInterval); err != nil {
			return last, err
		}
		s, err := readTableStats(ctx, q)
		if err != nil || s.writes == last.writes {
			return s, err
		}
		last = s
	}
	r.log.Warn("bench: row write counts still changing; using the last", "waited", statsTimeout)
	return last, nil
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
