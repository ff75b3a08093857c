package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/notifier"
)

// ErrWatcherRunning is returned by Watcher.Run when the watcher already runs.
var ErrWatcherRunning = errors.New("outbox: watcher already running")

// maxPendingIDs bounds the ids a Subscription collects between two reads;
// past it the subscription asks its reader to re-read everything.
const maxPendingIDs = 1024

// WatcherConfig configures a Watcher. The zero value applies the documented
// defaults.
type WatcherConfig struct {
	// PollInterval is how often Wait re-reads an entry, and how often a
	// Subscription's Poll channel fires, when no notification arrives: the
	// fallback for relays that cannot notify and for lost notifications.
	// Default DefaultPollInterval (5s); at least 10ms.
	PollInterval time.Duration

	// Logger receives LISTEN connection problems. Default slog.Default().
	Logger *slog.Logger
}

// Watcher follows entries' progress for any number of concurrent waiters
// over one LISTEN connection (on ProgressChannel) per process, instead of
// one connection per waiter as [Wait] holds. Create it with NewWatcher and
// run it with Run; Wait and subscriptions work before Run too, but then
// learn of changes only by polling.
type Watcher struct {
	pool    *pgxpool.Pool
	cfg     WatcherConfig
	running atomic.Bool
	conn    atomic.Pointer[notifier.Listener]

	mu     sync.Mutex
	byID   map[int64]map[*Subscription]struct{}
	byCorr map[string]map[*Subscription]struct{}
}

// NewWatcher returns a watcher that reads entries through pool and LISTENs
// on a connection of its own made from pool's connection settings.
func NewWatcher(pool *pgxpool.Pool, cfg WatcherConfig) (*Watcher, error) {
	if pool == nil {
		return nil, ErrNilQuerier
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollInterval < 10*time.Millisecond {
		return nil, invalid("poll interval", "%s is below the minimum 10ms", cfg.PollInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{
		pool:   pool,
		cfg:    cfg,
		byID:   map[int64]map[*Subscription]struct{}{},
		byCorr: map[string]map[*Subscription]struct{}{},
	}, nil
}

// Run holds the LISTEN connection until ctx is done, reconnecting with
// backoff after errors, and returns nil then. After each (re)connect every
// subscription is told to re-read, since notifications may have been missed
// meanwhile. It returns ErrWatcherRunning if the watcher already runs.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrWatcherRunning
	}
	defer w.running.Store(false)
	l, err := notifier.New(notifier.Config{
		ConnConfig: w.pool.Config().ConnConfig,
		Channel:    ProgressChannel,
		Logger:     w.cfg.Logger,
		OnNotify:   func(payload string) { w.dispatch(ctx, payload) },
		OnConnect:  w.wakeAll,
	})
	if err != nil {
		return fmt.Errorf("outbox: watcher: %w", err)
	}
	w.conn.Store(l)
	defer w.conn.Store(nil)
	l.Run(ctx)
	return nil
}

// Listening reports whether the LISTEN connection is up, so that changes
// are learnt of as they happen rather than by polling.
func (w *Watcher) Listening() bool {
	l := w.conn.Load()
	return l != nil && l.Connected()
}

// PollInterval returns the watcher's poll interval.
func (w *Watcher) PollInterval() time.Duration { return w.cfg.PollInterval }

// Querier returns the pool the watcher reads entries through.
func (w *Watcher) Querier() Querier { return w.pool }

// Wait is [Wait] over the watcher's shared LISTEN connection: it blocks
// until the entry id is done or dead and returns it, result included (a
// dead entry with a nil error), ErrNotFound at once when there is no such
// entry, or a wrapped context error when ctx ends first. It holds no
// connection while it waits.
func (w *Watcher) Wait(ctx context.Context, id int64) (*Entry, error) {
	sub := w.Follow(id)
	defer sub.Close()
	for {
		e, err := Get(ctx, w.pool, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, err
			}
			return nil, waitError(ctx, id, err)
		}
		if e.State.Finished() {
			return e, nil
		}
		select {
		case <-ctx.Done():
			return nil, waitError(ctx, id, ctx.Err())
		case <-sub.Changed():
			sub.Take()
		case <-sub.Poll():
		}
	}
}

// Follow subscribes to changes of the entries ids. Close the subscription
// when done with it.
func (w *Watcher) Follow(ids ...int64) *Subscription {
	s := w.newSubscription()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		w.followLocked(s, id)
	}
	return s
}

// FollowCorrelation subscribes to changes of every entry whose
// HeaderCorrelationID is id, including entries enqueued later: the
// watcher looks up the correlation of each announced entry (one primary key
// query per notification, made only while such subscriptions exist).
// Close the subscription when done with it.
func (w *Watcher) FollowCorrelation(id string) *Subscription {
	s := w.newSubscription()
	s.corr, s.isCorr = id, true
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.byCorr[id]
	if set == nil {
		set = map[*Subscription]struct{}{}
		w.byCorr[id] = set
	}
	set[s] = struct{}{}
	return s
}

func (w *Watcher) newSubscription() *Subscription {
	return &Subscription{
		w:       w,
		changed: make(chan struct{}, 1),
		ticker:  time.NewTicker(w.cfg.PollInterval),
		pending: map[int64]struct{}{},
	}
}

func (w *Watcher) followLocked(s *Subscription, id int64) {
	if _, ok := s.ids[id]; ok {
		return
	}
	if s.ids == nil {
		s.ids = map[int64]struct{}{}
	}
	s.ids[id] = struct{}{}
	set := w.byID[id]
	if set == nil {
		set = map[*Subscription]struct{}{}
		w.byID[id] = set
	}
	set[s] = struct{}{}
}

// dispatch routes one notification to the subscriptions of its ids, and of
// their correlation ids.
func (w *Watcher) dispatch(ctx context.Context, payload string) {
	ids := parseIDs(payload)
	if len(ids) == 0 {
		return
	}
	w.mu.Lock()
	for _, id := range ids {
		for s := range w.byID[id] {
			s.note(id)
		}
	}
	corr := len(w.byCorr) > 0
	w.mu.Unlock()
	if !corr {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := correlationsOf(qctx, w.pool, ids)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.cfg.Logger.Warn("txoutbox: watcher: looking up correlation ids failed; asking their followers to re-read", "error", err)
		for _, set := range w.byCorr {
			for s := range set {
				s.noteAll()
			}
		}
		return
	}
	for id, c := range m {
		for s := range w.byCorr[c] {
			s.note(id)
		}
	}
}

// wakeAll asks every subscription to re-read everything.
func (w *Watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[*Subscription]struct{}{}
	for _, set := range w.byID {
		for s := range set {
			seen[s] = struct{}{}
		}
	}
	for _, set := range w.byCorr {
		for s := range set {
			seen[s] = struct{}{}
		}
	}
	for s := range seen {
		s.noteAll()
	}
}

func correlationsOf(ctx context.Context, q Querier, ids []int64) (map[int64]string, error) {
	var raw []byte
	if err := q.QueryRow(ctx, sqlCorrelationsOf, ids).Scan(&raw); err != nil {
		return nil, wrapDBError("correlations", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("outbox: decoding correlations: %w", err)
	}
	out := make(map[int64]string, len(m))
	for k, v := range m {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("outbox: decoding correlations: %w", err)
		}
		out[id] = v
	}
	return out, nil
}

// Subscription is a Watcher's feed of changes for the entries it follows.
// Changed fires when a relay announced one of them (or the LISTEN
// connection came back and everything should be re-read); Take then says
// which. Poll fires every PollInterval regardless, as the fallback.
// A Subscription is for one reader goroutine at a time.
type Subscription struct {
	w       *Watcher
	corr    string
	isCorr  bool               // subscribed through FollowCorrelation
	ids     map[int64]struct{} // guarded by w.mu
	changed chan struct{}
	ticker  *time.Ticker
	closed  atomic.Bool

	mu      sync.Mutex
	pending map[int64]struct{}
	all     bool
}

// Changed returns a channel that receives a value when a followed entry
// was announced since the last Take.
func (s *Subscription) Changed() <-chan struct{} { return s.changed }

// Poll returns a channel that receives a value every PollInterval.
func (s *Subscription) Poll() <-chan time.Time { return s.ticker.C }

// Take returns the ids announced since the last Take, in no particular
// order, and whether the reader should re-read every entry it follows (a
// reconnect or an overflow may have lost some announcements).
func (s *Subscription) Take() (ids []int64, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.pending {
		ids = append(ids, id)
	}
	clear(s.pending)
	all, s.all = s.all, false
	return ids, all
}

// Add follows the entry id too (a correlation's entry found by a lookup,
// say).
func (s *Subscription) Add(id int64) {
	if s.closed.Load() {
		return
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.followLocked(s, id)
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.ticker.Stop()
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range s.ids {
		if set := w.byID[id]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(w.byID, id)
			}
		}
	}
	if s.isCorr {
		if set := w.byCorr[s.corr]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(w.byCorr, s.corr)
			}
		}
	}
}

func (s *Subscription) note(id int64) {
	s.mu.Lock()
	if len(s.pending) < maxPendingIDs {
		s.pending[id] = struct{}{}
	} else {
		s.all = true
	}
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) noteAll() {
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
