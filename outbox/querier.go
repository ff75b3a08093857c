package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"
)

// Querier is the one method this package needs from a database handle.
// pgx.Tx, *pgx.Conn and *pgxpool.Pool implement it; [SQL] adapts
// database/sql. Pass the transaction that writes your domain rows to get an
// atomic enqueue; a pool or connection outside a transaction enqueues on
// its own.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SQLQuerier is implemented by *sql.Tx, *sql.DB and *sql.Conn.
type SQLQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQL adapts a database/sql handle — normally a *sql.Tx opened on the pgx
// driver (github.com/jackc/pgx/v5/stdlib) — into a [Querier]:
//
//	tx, err := db.BeginTx(ctx, nil)
//	...
//	_, err = outbox.Enqueue(ctx, outbox.SQL(tx), msg)
//
// Other drivers work as long as they accept the parameter types pgx does
// (arrays among them); the pgx driver is the one tested.
func SQL(q SQLQuerier) Querier {
	return sqlQuerier{q: q}
}

type sqlQuerier struct{ q SQLQuerier }

func (s sqlQuerier) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	if isNil(s.q) {
		return errRow{ErrNilQuerier}
	}
	return s.q.QueryRowContext(ctx, query, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// isNil reports whether v is nil or a typed nil pointer, map, slice,
// channel, function or interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func checkQuerier(q Querier) error {
	if isNil(q) {
		return ErrNilQuerier
	}
	if s, ok := q.(sqlQuerier); ok && isNil(s.q) {
		return ErrNilQuerier
	}
	return nil
}

// wrapDBError classifies driver errors: a closed transaction becomes
// ErrTxClosed (the driver's error stays in the chain).
func wrapDBError(op string, err error) error {
	if errors.Is(err, pgx.ErrTxClosed) || errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("outbox: %s: %w: %w", op, ErrTxClosed, err)
	}
	return fmt.Errorf("outbox: %s: %w", op, err)
}

func isSQLNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
