package outbox

import (
	"context"
	"encoding/json"
	"fmt"
)

// MaxListLimit caps the entries one ListByCorrelation or GetMany returns.
const MaxListLimit = 1000

// ListByCorrelation lists the entries enqueued with [WithCorrelationID] id
// (any state), oldest first, at most limit of them (0 means 100; the cap is
// MaxListLimit).
//
// It reads the headers column: give it an expression index, as
// docs/observability.md shows, before calling it often on a large table.
func ListByCorrelation(ctx context.Context, q Querier, id string, limit int) ([]Entry, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, invalid("correlation id", "must not be empty")
	}
	switch {
	case limit < 0:
		return nil, invalid("limit", "negative limit %d", limit)
	case limit == 0:
		limit = 100
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	return listEntries(ctx, q, "list by correlation", sqlListByCorrelation, id, limit)
}

// GetMany reads the entries with the given ids, in id order; ids with no
// entry are absent from the result. At most MaxListLimit ids.
func GetMany(ctx context.Context, q Querier, ids []int64) ([]Entry, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	if len(ids) > MaxListLimit {
		return nil, invalid("ids", "%d ids, over the limit of %d", len(ids), MaxListLimit)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return listEntries(ctx, q, "get entries", sqlGetMany, ids)
}

func listEntries(ctx context.Context, q Querier, op, query string, args ...any) ([]Entry, error) {
	var raw []byte
	if err := q.QueryRow(ctx, query, args...).Scan(&raw); err != nil {
		return nil, wrapDBError(op, err)
	}
	var out []Entry
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("outbox: %s: decoding entries: %w", op, err)
	}
	for i := range out {
		out[i].normalize()
	}
	return out, nil
}
