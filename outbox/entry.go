package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// State is the lifecycle state of an entry.
type State string

// The states of an entry. An entry starts pending; a relay claims it
// (running); it ends done or dead, or goes back to pending with a later
// run_at when an attempt fails and attempts remain.
const (
	StatePending State = "pending"
	StateRunning State = "running"
	StateDone    State = "done"
	StateDead    State = "dead"
)

// Finished reports whether s is a final state (done or dead).
func (s State) Finished() bool { return s == StateDone || s == StateDead }

// Entry is a snapshot of one outbox row, as read by Get, GetByKey and
// ListDead.
type Entry struct {
	ID          int64      `json:"id"`
	Topic       string     `json:"topic"`
	Key         string     `json:"key"`
	OrderingKey *string    `json:"ordering_key"`
	Queue       string     `json:"queue"`
	Priority    int        `json:"priority"`
	State       State      `json:"state"`
	Attempt     int        `json:"attempt"` // attempts counted against MaxAttempts
	MaxAttempts int        `json:"max_attempts"`
	RunAt       time.Time  `json:"run_at"`
	LeaseUntil  *time.Time `json:"lease_until"`
	LeaseOwner  *string    `json:"lease_owner"`
	LastError   *string    `json:"last_error"`
	// Headers are a JSON object of strings (enforced by the database since
	// schema version 5); a done entry written before then may hold other
	// values, which are read as their JSON text.
	Headers    map[string]string `json:"headers"`
	Result     json.RawMessage   `json:"result"` // nil when the handler reported none
	Payload    json.RawMessage   `json:"payload"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt *time.Time        `json:"finished_at"`
}

// normalize maps JSON null results to nil.
func (e *Entry) normalize() {
	if string(e.Result) == "null" {
		e.Result = nil
	}
}

// Get reads the entry with the given id. It returns ErrNotFound when there is
// none (it never existed, or retention removed it after it was done).
func Get(ctx context.Context, q Querier, id int64) (*Entry, error) {
	return getOne(ctx, q, sqlGetByID, id)
}

// GetByKey reads the entry with the given topic and idempotency key.
func GetByKey(ctx context.Context, q Querier, topic, key string) (*Entry, error) {
	return getOne(ctx, q, sqlGetByKey, topic, key)
}

func getOne(ctx context.Context, q Querier, query string, args ...any) (*Entry, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	var raw []byte
	if err := q.QueryRow(ctx, query, args...).Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) || isSQLNoRows(err) {
			return nil, ErrNotFound
		}
		return nil, wrapDBError("get entry", err)
	}
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("outbox: decoding entry: %w", err)
	}
	e.normalize()
	return &e, nil
}

// DeadFilter selects dead entries for ListDead.
type DeadFilter struct {
	Topic    string // only this topic when set
	BeforeID int64  // only ids below this, for paging; 0 means from the newest
	Limit    int    // at most this many; 0 means 100, the cap is 1000
}

// ListDead lists dead entries, newest first, with their last error.
func ListDead(ctx context.Context, q Querier, f DeadFilter) ([]Entry, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, invalid("limit", "negative limit %d", limit)
	case limit == 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	var raw []byte
	err := q.QueryRow(ctx, sqlListDead, nullString(f.Topic), nullInt(f.BeforeID), limit).Scan(&raw)
	if err != nil {
		return nil, wrapDBError("list dead", err)
	}
	var out []Entry
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("outbox: decoding entries: %w", err)
	}
	for i := range out {
		out[i].normalize()
	}
	return out, nil
}

// Selection names dead entries for Replay, Discard and CountDead: those
// with the given ids, those of the given topic, or — only when All is set
// and nothing else is — every dead entry.
type Selection struct {
	IDs   []int64
	Topic string
	All   bool
}

func (s Selection) args() ([]any, error) {
	if len(s.IDs) == 0 && s.Topic == "" && !s.All {
		return nil, invalid("selection", "name ids, a topic, or set All")
	}
	if s.All && (len(s.IDs) > 0 || s.Topic != "") {
		return nil, invalid("selection", "All cannot be combined with ids or a topic")
	}
	var ids any
	if len(s.IDs) > 0 {
		ids = s.IDs
	}
	return []any{ids, nullString(s.Topic), s.All}, nil
}

// Replay returns the selected dead entries to pending, runnable now, with a
// fresh set of MaxAttempts attempts, and wakes the relays. Entries that are
// not dead are left alone. It returns how many entries were replayed.
func Replay(ctx context.Context, q Querier, s Selection) (int64, error) {
	if err := checkQuerier(q); err != nil {
		return 0, err
	}
	args, err := s.args()
	if err != nil {
		return 0, err
	}
	var n, woken int64
	if err := q.QueryRow(ctx, sqlReplay, args...).Scan(&n, &woken); err != nil {
		return 0, wrapDBError("replay", err)
	}
	return n, nil
}

// Discard deletes the selected dead entries for good. Entries that are not
// dead are left alone. It returns how many were deleted.
func Discard(ctx context.Context, q Querier, s Selection) (int64, error) {
	return countSelected(ctx, q, s, "discard", sqlDiscard)
}

// CountDead counts the dead entries a selection names, without changing
// them: what Replay or Discard would act on at this moment (a dry run). It
// validates the selection as they do: an empty or contradictory one is an
// ErrInvalid error (*InvalidError with Field "selection").
func CountDead(ctx context.Context, q Querier, s Selection) (int64, error) {
	return countSelected(ctx, q, s, "count dead", sqlCountDead)
}

// countSelected runs query, a statement over the dead entries s selects
// that returns one count, after checking q and s.
func countSelected(ctx context.Context, q Querier, s Selection, op, query string) (int64, error) {
	if err := checkQuerier(q); err != nil {
		return 0, err
	}
	args, err := s.args()
	if err != nil {
		return 0, err
	}
	var n int64
	if err := q.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, wrapDBError(op, err)
	}
	return n, nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}
