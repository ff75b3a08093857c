package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what the store needs from a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotMigrated is returned by CheckSchema when the outbox tables are
// missing or older than version 5.
var ErrNotMigrated = errors.New("txoutbox schema missing or too old: run the migrations first (migrations.Up or `txoutbox migrate up`)")

// State values as stored.
const (
	StatePending = "pending"
	StateRunning = "running"
	StateDone    = "done"
	StateDead    = "dead"
)

// Claimed is one entry as returned by Claim.
type Claimed struct {
	ID          int64
	Topic       string
	Key         string
	OrderingKey *string
	Queue       string
	Priority    int16
	Attempt     int32 // the fencing token: claims so far, never decreasing
	AttemptBase int32 // claims that do not count against MaxAttempts
	MaxAttempts int32
	Payload     []byte // nil when over ClaimParams.MaxPayloadBytes or MaxHeadersBytes
	Headers     []byte // nil likewise
	// PayloadBytes and HeadersBytes are the sizes of the payload's and the
	// headers' JSON text, measured by the database.
	PayloadBytes int32
	HeadersBytes int32
	CreatedAt    time.Time
	RunAt        time.Time
	// KeyGenerated reports a key that no producer chose: it cannot repeat,
	// so processed-key bookkeeping is skipped for it.
	KeyGenerated bool
	Processed    bool // the topic+key is already in outbox_processed_keys
}

// EffectiveAttempt is the attempt number that counts against MaxAttempts,
// starting at 1.
func (c *Claimed) EffectiveAttempt() int { return int(c.Attempt - c.AttemptBase) }

// ClaimParams selects and leases entries.
type ClaimParams struct {
	Queue       string
	Topics      []string
	Limit       int
	Lease       time.Duration
	Owner       string
	Now         *time.Time
	BlockOnDead bool
	// ProbeKeys asks whether each claimed entry's key was processed
	// (Claimed.Processed); false skips the lookup.
	ProbeKeys bool
	// MaxPayloadBytes and MaxHeadersBytes: an entry over either is claimed
	// without its payload and headers (only their sizes); 0 means no limit.
	MaxPayloadBytes int
	MaxHeadersBytes int
	// MaxBytes bounds the payload and header bytes one claim returns (the
	// first entry is always claimed); 0 means no bound.
	MaxBytes int64
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// customPlan makes pgx send a statement unprepared (with its parameter
// types cached), so that Postgres plans it for the actual arrays each time.
// The statements that join unnest(...) arrays against outbox_entries get a
// generic plan after five executions whose cost grows with batch size times
// running entries: renewing 3,000 leases took 1.4 s with it and 42 ms
// without (docs/benchmarks.md).
const customPlan = pgx.QueryExecModeCacheDescribe

// Claim leases up to p.Limit runnable entries in one short transaction (the
// statement itself) and returns them. more reports that p.MaxBytes cut the
// claim short: it picked more runnable entries than it returns.
func Claim(ctx context.Context, db DBTX, p ClaimParams) (claimed []Claimed, more bool, err error) {
	rows, err := db.Query(ctx, sqlClaim, claimArgs(p)...)
	if err != nil {
		return nil, false, fmt.Errorf("claim: %w", err)
	}
	return collectClaimed(rows)
}

// Batcher sends statements in one round trip; *pgxpool.Pool and *pgx.Conn
// are Batchers.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ClaimAfterCheck asks whether producers of p.Queue are committing and then
// claims as Claim does, the two statements sent in one round trip: quiet
// reports that no transaction that inserted entries of the queue was
// between the start of its commit and the moment its entries became
// visible when the check ran, before the claim started. The claim then sees
// the entries of every producer that skipped its notification before the
// check (schema version 5, docs/schema.md).
func ClaimAfterCheck(ctx context.Context, db Batcher, p ClaimParams) (claimed []Claimed, more, quiet bool, err error) {
	b := &pgx.Batch{}
	b.Queue(sqlProducersQuiet, p.Queue)
	b.Queue(sqlClaim, claimArgs(p)...)
	br := db.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("claim: %w", cerr)
		}
	}()
	if err := br.QueryRow().Scan(&quiet); err != nil {
		return nil, false, false, fmt.Errorf("check for committing producers: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, false, false, fmt.Errorf("claim: %w", err)
	}
	claimed, more, err = collectClaimed(rows)
	return claimed, more, quiet, err
}

func claimArgs(p ClaimParams) []any {
	return []any{p.Queue, p.Topics, p.Now, p.Limit, micros(p.Lease), p.Owner, p.BlockOnDead, p.ProbeKeys,
		p.MaxPayloadBytes, p.MaxHeadersBytes, p.MaxBytes}
}

// collectClaimed reads a claim's rows, in the order the relay starts them.
func collectClaimed(rows pgx.Rows) (claimed []Claimed, more bool, err error) {
	var picked int64
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claimed, error) {
		var c Claimed
		err := row.Scan(&c.ID, &c.Topic, &c.Key, &c.OrderingKey, &c.Queue, &c.Priority,
			&c.Attempt, &c.AttemptBase, &c.MaxAttempts, &c.Payload, &c.Headers,
			&c.PayloadBytes, &c.HeadersBytes, &picked, &c.CreatedAt, &c.RunAt, &c.KeyGenerated, &c.Processed)
		return c, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("claim: %w", err)
	}
	// UPDATE ... RETURNING does not keep the picking order; the relay
	// starts entries in the order returned.
	slices.SortFunc(out, func(a, b Claimed) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.RunAt.Compare(b.RunAt), cmp.Compare(a.ID, b.ID))
	})
	return out, picked > int64(len(out)), nil
}

// HandBackUnknown returns to pending, without counting the attempt, the
// running entries of queue leased under owner whose ids are not in known,
// and returns how many there were. A relay calls it after a claim failed
// in a way that may have committed, with the ids of every lease it holds.
func HandBackUnknown(ctx context.Context, db DBTX, queue, owner string, known []int64) (int, error) {
	if known == nil {
		known = []int64{}
	}
	tag, err := db.Exec(ctx, sqlHandBackUnknown, queue, owner, known)
	if err != nil {
		return 0, fmt.Errorf("hand back unknown leases: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Outcome is the result of one attempt, to be applied by Complete.
type Outcome struct {
	ID        int64
	Attempt   int32  // fencing token from Claimed.Attempt
	State     string // StateDone, StatePending (retry or hand-back) or StateDead
	Delay     time.Duration
	Error     *string
	Result    []byte // JSON or nil
	Handback  bool   // give the attempt back: it does not count
	RecordKey bool   // with StateDone: record topic+key as processed
}

// Complete applies outcomes in one statement and returns the ids that were
// applied; the others were fenced off (their lease was lost).
func Complete(ctx context.Context, db DBTX, now *time.Time, outs []Outcome) (map[int64]bool, error) {
	var rows pgx.Rows
	var err error
	if allPlainDone(outs) {
		rows, err = completeDone(ctx, db, now, outs)
	} else {
		rows, err = completeAny(ctx, db, now, outs)
	}
	if err != nil {
		return nil, fmt.Errorf("complete: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("complete: %w", err)
	}
	m := make(map[int64]bool, len(applied))
	for _, id := range applied {
		m[id] = true
	}
	return m, nil
}

// allPlainDone reports a batch of successes without results: the common
// case, which sqlCompleteDone writes.
func allPlainDone(outs []Outcome) bool {
	for _, o := range outs {
		if o.State != StateDone || o.Result != nil || o.Error != nil || o.Handback || o.Delay != 0 {
			return false
		}
	}
	return true
}

func completeDone(ctx context.Context, db DBTX, now *time.Time, outs []Outcome) (pgx.Rows, error) {
	n := len(outs)
	ids := make([]int64, n)
	attempts := make([]int32, n)
	recordKeys := make([]bool, n)
	for i, o := range outs {
		ids[i], attempts[i], recordKeys[i] = o.ID, o.Attempt, o.RecordKey
	}
	return db.Query(ctx, sqlCompleteDone, customPlan, now, ids, attempts, recordKeys)
}

func completeAny(ctx context.Context, db DBTX, now *time.Time, outs []Outcome) (pgx.Rows, error) {
	n := len(outs)
	ids := make([]int64, n)
	attempts := make([]int32, n)
	states := make([]string, n)
	delays := make([]int64, n)
	errs := make([]*string, n)
	results := make([]*string, n)
	handbacks := make([]bool, n)
	recordKeys := make([]bool, n)
	for i, o := range outs {
		ids[i], attempts[i], states[i] = o.ID, o.Attempt, o.State
		delays[i], errs[i], handbacks[i], recordKeys[i] = micros(o.Delay), o.Error, o.Handback, o.RecordKey
		if o.Result != nil {
			s := string(o.Result)
			results[i] = &s
		}
	}
	return db.Query(ctx, sqlComplete, customPlan, now, ids, attempts, states, delays, errs, results, handbacks, recordKeys)
}

// CompleteOneTx marks one entry done inside tx, fenced by attempt. It
// reports false when the lease was lost; the caller must then roll back.
func CompleteOneTx(ctx context.Context, tx DBTX, now *time.Time, id int64, attempt int32, result []byte) (bool, error) {
	var res *string
	if result != nil {
		s := string(result)
		res = &s
	}
	var n int64
	if err := tx.QueryRow(ctx, sqlCompleteOne, now, id, attempt, res).Scan(&n); err != nil {
		return false, fmt.Errorf("complete: %w", err)
	}
	return n == 1, nil
}

// MarkProcessed records scope+key as processed and reports whether it was
// new. Inside a transaction the insert also locks the key until commit.
func MarkProcessed(ctx context.Context, db DBTX, now *time.Time, scope, key string, entryID int64, result []byte) (bool, error) {
	var res *string
	if result != nil {
		s := string(result)
		res = &s
	}
	var inserted bool
	err := db.QueryRow(ctx, sqlMarkProcessed, now, scope, key, entryID, res).Scan(&inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark processed: %w", err)
	}
	return inserted, nil
}

// SetProcessedResult stores result on an existing processed key.
func SetProcessedResult(ctx context.Context, db DBTX, scope, key string, result []byte) error {
	var res *string
	if result != nil {
		s := string(result)
		res = &s
	}
	if _, err := db.Exec(ctx, sqlSetProcessedResult, scope, key, res); err != nil {
		return fmt.Errorf("set processed result: %w", err)
	}
	return nil
}

// Lease names one held lease.
type Lease struct {
	ID      int64
	Attempt int32
}

// Renew extends the given leases to now+lease and returns those renewed.
func Renew(ctx context.Context, db DBTX, now *time.Time, lease time.Duration, held []Lease) (map[int64]bool, error) {
	ids := make([]int64, len(held))
	attempts := make([]int32, len(held))
	for i, l := range held {
		ids[i], attempts[i] = l.ID, l.Attempt
	}
	rows, err := db.Query(ctx, sqlRenew, customPlan, now, micros(lease), ids, attempts)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	m := make(map[int64]bool, len(renewed))
	for _, id := range renewed {
		m[id] = true
	}
	return m, nil
}

// Rescued is one entry whose expired lease was taken back.
type Rescued struct {
	ID    int64
	Topic string
	Queue string
	State string // pending, or dead when it was the last attempt
}

// Rescue takes back up to limit expired leases.
func Rescue(ctx context.Context, db DBTX, now *time.Time, limit int) ([]Rescued, error) {
	rows, err := db.Query(ctx, sqlRescue, now, limit)
	if err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Rescued, error) {
		var r Rescued
		err := row.Scan(&r.ID, &r.Topic, &r.Queue, &r.State)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	return out, nil
}

// DeleteFinished deletes up to limit entries in state (done or dead) that
// finished more than age ago, and returns how many it deleted.
func DeleteFinished(ctx context.Context, db DBTX, now *time.Time, state string, age time.Duration, limit int) (int64, error) {
	tag, err := db.Exec(ctx, sqlDeleteFinished, state, now, limit, micros(age))
	if err != nil {
		return 0, fmt.Errorf("delete %s entries: %w", state, err)
	}
	return tag.RowsAffected(), nil
}

// DeleteProcessedKeys deletes up to limit processed keys recorded more than
// age ago.
func DeleteProcessedKeys(ctx context.Context, db DBTX, now *time.Time, age time.Duration, limit int) (int64, error) {
	tag, err := db.Exec(ctx, sqlDeleteProcessedKeys, now, limit, micros(age))
	if err != nil {
		return 0, fmt.Errorf("delete processed keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Unhandled is a topic and queue with due pending entries no handler takes.
type Unhandled struct {
	Topic string
	Queue string
	Count int64 // within a bounded sample
}

// FindUnhandled lists topics/queues of pending entries due for longer than
// age that the given topics and queues do not cover.
func FindUnhandled(ctx context.Context, db DBTX, now *time.Time, topics, queues []string, age time.Duration) ([]Unhandled, error) {
	rows, err := db.Query(ctx, sqlUnhandled, topics, queues, now, micros(age))
	if err != nil {
		return nil, fmt.Errorf("find unhandled: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Unhandled, error) {
		var u Unhandled
		err := row.Scan(&u.Topic, &u.Queue, &u.Count)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("find unhandled: %w", err)
	}
	return out, nil
}

// CheckSchema verifies that the outbox tables exist at schema version 5 or
// later (the relay's wake-up needs version 5's trigger).
func CheckSchema(ctx context.Context, db DBTX) error {
	var v5 bool
	err := db.QueryRow(ctx, sqlCheckSchema).Scan(&v5)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703") {
		return fmt.Errorf("%w (%s)", ErrNotMigrated, pgErr.Message)
	}
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if !v5 {
		return fmt.Errorf("%w (the schema is older than version 5)", ErrNotMigrated)
	}
	return nil
}

// TableHealth is what decides whether a relay vacuums outbox_entries.
type TableHealth struct {
	Dead, Live int64 // pg_stat_user_tables.n_dead_tup, n_live_tup
	MayVacuum  bool  // the current role owns the table or is superuser
}

// ReadTableHealth reads outbox_entries' row statistics.
func ReadTableHealth(ctx context.Context, db DBTX) (TableHealth, error) {
	var h TableHealth
	if err := db.QueryRow(ctx, sqlTableHealth).Scan(&h.Dead, &h.Live, &h.MayVacuum); err != nil {
		return h, fmt.Errorf("read table statistics: %w", err)
	}
	return h, nil
}

// Vacuum runs VACUUM on outbox_entries on one connection of pool, unless
// another relay holds the vacuum lock; ran reports whether it did.
func Vacuum(ctx context.Context, pool *pgxpool.Pool) (ran bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("vacuum: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, sqlTryVacuumLock).Scan(&locked); err != nil {
		return false, fmt.Errorf("vacuum lock: %w", err)
	}
	if !locked {
		return false, nil
	}
	// What the session must undo before it goes back to the pool; if it
	// cannot, it is closed (the lock and settings die with it).
	undo := []string{sqlVacuumUnlock}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, q := range slices.Backward(undo) {
			if _, uerr := conn.Exec(uctx, q); uerr != nil {
				_ = conn.Conn().Close(uctx)
				return
			}
		}
	}()
	// Throttled like autovacuum (vacuum_cost_delay 2ms): an unthrottled
	// VACUUM of a large table took the CPU from claims for long enough to
	// show as 170 ms commit-to-start latencies.
	if _, err := conn.Exec(ctx, sqlVacuumThrottle); err != nil {
		return false, fmt.Errorf("vacuum: %w", err)
	}
	undo = append(undo, sqlVacuumUnthrottle, sqlVacuumUntimeout)
	if _, err := conn.Exec(ctx, sqlVacuum); err != nil {
		return false, fmt.Errorf("vacuum: %w", err)
	}
	return true, nil
}
