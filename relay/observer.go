package relay

import "time"

// EventKind says what happened.
type EventKind int

// The events a relay reports to its Observer.
const (
	// EventClaimed: a batch of Count entries was claimed in Queue.
	EventClaimed EventKind = iota + 1
	// EventStarted: a handler started on an entry.
	EventStarted
	// EventDone: an entry completed.
	EventDone
	// EventSkipped: an entry's topic+key was already processed; its handler
	// did not run and the entry is done.
	EventSkipped
	// EventRetry: an attempt failed; the entry runs again after RetryIn.
	EventRetry
	// EventDead: an entry was dead-lettered (Err says why).
	EventDead
	// EventHandedBack: shutdown returned an entry without counting the attempt.
	EventHandedBack
	// EventFenced: a completion was rejected because the lease was lost.
	EventFenced
	// EventLeaseLost: a lease could not be renewed; the handler's context
	// was cancelled with ErrLeaseLost.
	EventLeaseLost
	// EventRescued: an expired lease was taken back (Count entries).
	EventRescued
	// EventDeleted: retention deleted Count rows (Topic names the table part).
	EventDeleted
	// EventUnhandled: Count due entries of Topic/Queue have no handler here.
	EventUnhandled
	// EventListenerUp / EventListenerDown: the LISTEN connection changed.
	EventListenerUp
	// EventListenerDown: the LISTEN connection was lost (Err says why).
	EventListenerDown
	// EventError: a relay operation (claim, complete, renew, maintenance)
	// failed and will be retried.
	EventError
	// EventOutcomesWritten: one completion statement wrote Count outcomes.
	EventOutcomesWritten
	// EventVacuumed: this relay vacuumed outbox_entries, which held Count
	// dead row versions, in Duration (Config.VacuumThreshold).
	EventVacuumed
)

var eventNames = map[EventKind]string{
	EventClaimed: "claimed", EventStarted: "started", EventDone: "done", EventSkipped: "skipped",
	EventRetry: "retry", EventDead: "dead", EventHandedBack: "handed_back", EventFenced: "fenced",
	EventLeaseLost: "lease_lost", EventRescued: "rescued", EventDeleted: "deleted",
	EventUnhandled: "unhandled", EventListenerUp: "listener_up", EventListenerDown: "listener_down",
	EventError: "error", EventOutcomesWritten: "outcomes_written", EventVacuumed: "vacuumed",
}

// String returns the event's name, e.g. "done".
func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return "unknown"
}

// Event is one thing the relay did. Fields not meaningful for a kind are
// zero.
type Event struct {
	Kind     EventKind
	Queue    string
	Topic    string
	EntryID  int64
	Attempt  int           // attempt counted against the limit
	Count    int           // batch or row count
	Duration time.Duration // handler run time; with EventVacuumed, the VACUUM's
	RetryIn  time.Duration // with EventRetry
	Err      error
}

// Observer receives the relay's events, for metrics and tests. Observe is
// called synchronously from the relay's goroutines, concurrently: it must
// be safe for concurrent use and fast.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }
