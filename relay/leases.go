package relay

import (
	"context"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/internal/store"
)

// leaseEntry is one lease this relay holds, from claim until its outcome is
// settled (settle, completer.go).
type leaseEntry struct {
	id      int64
	attempt int32
	ctx     context.Context
	cancel  context.CancelCauseFunc

	// guarded by leaseTable.mu
	deadline  time.Time // local monotonic expiry, pushed on every renewal
	finishing bool      // its outcome is being or was written: do not renew or expire
	lost      bool
}

// leaseTable tracks held leases for the heartbeat. The claimer adds them,
// settle removes them, the heartbeat renews and expires them.
type leaseTable struct {
	mu sync.Mutex
	m  map[int64]*leaseEntry
}

func newLeaseTable() *leaseTable { return &leaseTable{m: map[int64]*leaseEntry{}} }

func (t *leaseTable) add(parent context.Context, id int64, attempt int32, deadline time.Time) *leaseEntry {
	ctx, cancel := context.WithCancelCause(parent)
	le := &leaseEntry{id: id, attempt: attempt, ctx: ctx, cancel: cancel, deadline: deadline}
	t.mu.Lock()
	t.m[id] = le
	t.mu.Unlock()
	return le
}

// remove drops a lease once its outcome is settled, and releases its context.
func (t *leaseTable) remove(le *leaseEntry) {
	t.mu.Lock()
	if cur, ok := t.m[le.id]; ok && cur == le {
		delete(t.m, le.id)
	}
	t.mu.Unlock()
	le.cancel(context.Canceled)
}

// setFinishing takes le out of renewal and local expiry: its outcome is
// being written in a transactional handler's transaction, or the completer
// wrote it and settle will remove le. A renewal would find the entry no
// longer running and report the lease lost.
func (t *leaseTable) setFinishing(le *leaseEntry) {
	t.mu.Lock()
	le.finishing = true
	t.mu.Unlock()
}

// ids lists the entries this relay holds leases on.
func (t *leaseTable) ids() []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]int64, 0, len(t.m))
	for id := range t.m {
		out = append(out, id)
	}
	return out
}

func (t *leaseTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// renewable lists the leases to renew now.
func (t *leaseTable) renewable() []store.Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]store.Lease, 0, len(t.m))
	for _, le := range t.m {
		if !le.finishing && !le.lost {
			out = append(out, store.Lease{ID: le.id, Attempt: le.attempt})
		}
	}
	return out
}

// settle applies a renewal result: renewed leases get a new local deadline;
// the others are lost and their handlers cancelled. It returns the lost ones.
func (t *leaseTable) settle(asked []store.Lease, renewed map[int64]bool, deadline time.Time) []*leaseEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost []*leaseEntry
	for _, l := range asked {
		le, ok := t.m[l.ID]
		if !ok || le.attempt != l.Attempt || le.finishing {
			continue
		}
		if renewed[l.ID] {
			le.deadline = deadline
			continue
		}
		if !le.lost {
			le.lost = true
			lost = append(lost, le)
		}
	}
	for _, le := range lost {
		le.cancel(ErrLeaseLost)
	}
	return lost
}

// expire cancels handlers whose local deadline passed without a renewal
// (the database is unreachable): another relay may take them over.
func (t *leaseTable) expire(now time.Time) []*leaseEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost []*leaseEntry
	for _, le := range t.m {
		if !le.lost && !le.finishing && now.After(le.deadline) {
			le.lost = true
			lost = append(lost, le)
		}
	}
	for _, le := range lost {
		le.cancel(ErrLeaseLost)
	}
	return lost
}
