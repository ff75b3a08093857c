package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// QueueStats summarises the entries of one topic in one queue.
type QueueStats struct {
	Topic string `json:"topic"`
	Queue string `json:"queue"`
	// Pending counts entries waiting to run, Due those of them whose time
	// has come (the backlog), Retrying those waiting after a failed attempt.
	Pending  int64 `json:"pending"`
	Due      int64 `json:"due"`
	Retrying int64 `json:"retrying"`
	// Running counts entries leased by a relay now.
	Running int64 `json:"running"`
	// Dead counts dead-lettered entries still kept.
	Dead int64 `json:"dead"`
	// DoneLastHour and DeadLastHour count entries that finished in the last
	// hour: throughput and failures.
	DoneLastHour int64 `json:"done_last_hour"`
	DeadLastHour int64 `json:"dead_last_hour"`
	// OldestDue is how long the oldest due entry has been waiting (the
	// lag); zero without a backlog.
	OldestDue time.Duration `json:"oldest_due_ns"`
}

// Stats reports depth, lag and failures per topic and queue, from the
// partial indexes the relay uses (it does not scan done entries). Entries
// not counted anywhere (no pending, running, dead or recently finished
// entries) are absent.
func Stats(ctx context.Context, q Querier) ([]QueueStats, error) {
	if err := checkQuerier(q); err != nil {
		return nil, err
	}
	var raw []byte
	if err := q.QueryRow(ctx, sqlStats).Scan(&raw); err != nil {
		return nil, wrapDBError("stats", err)
	}
	var rows []struct {
		QueueStats
		OldestSeconds float64 `json:"oldest_due_seconds"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		return nil, fmt.Errorf("outbox: decoding stats: %w", err)
	}
	out := make([]QueueStats, len(rows))
	for i, r := range rows {
		out[i] = r.QueueStats
		out[i].OldestDue = time.Duration(r.OldestSeconds * float64(time.Second))
	}
	return out, nil
}
