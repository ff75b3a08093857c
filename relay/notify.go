package relay

import (
	"fmt"

	"github.com/txoutbox/txoutbox/internal/notifier"
	"github.com/txoutbox/txoutbox/outbox"
)

// NotifyChannel is the Postgres channel that the schema's insert trigger
// notifies, with the queue name as payload: [outbox.NotifyChannel].
const NotifyChannel = outbox.NotifyChannel

// newListener sets up the relay's LISTEN connection: a notification wakes
// the queue it names; a (re)connection wakes every queue, since
// notifications may have been missed while it was down.
func (r *Relay) newListener() (*notifier.Listener, error) {
	l, err := notifier.New(notifier.Config{
		ConnConfig: r.pool.Config().ConnConfig,
		Channel:    NotifyChannel,
		Logger:     r.log,
		OnNotify: func(payload string) {
			if q, ok := r.queues[payload]; ok {
				q.signal(q.wake)
			}
		},
		OnConnect: func() {
			r.observe(Event{Kind: EventListenerUp})
			r.wakeAll()
		},
		OnDisconnect: func(err error) {
			r.observe(Event{Kind: EventListenerDown, Err: err})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return l, nil
}

// Listening reports whether the LISTEN connection is up (always false with
// DisableListen), as outbox.Watcher.Listening does for a watcher. Useful
// for readiness checks.
func (r *Relay) Listening() bool {
	return r.listener != nil && r.listener.Connected()
}

// ListenerEnabled reports whether the relay uses LISTEN/NOTIFY (false
// with Config.DisableListen).
func (r *Relay) ListenerEnabled() bool { return r.listener != nil }

func (r *Relay) wakeAll() {
	for _, q := range r.queues {
		q.signal(q.wake)
	}
}
