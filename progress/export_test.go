package progress

import (
	"sync"
	"time"
)

// FakeClock is a clock for tests: its timers fire when Advance moves it
// past their deadline, never by themselves.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Duration // since the clock was made
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	at time.Duration
	c  chan time.Time
}

// UseFakeClock makes h's timers run on a new FakeClock and returns it.
// Call it before h serves any request.
func UseFakeClock(h *Handler) *FakeClock {
	c := &FakeClock{timers: map[*fakeTimer]struct{}{}}
	h.clock = c
	return c
}

func (c *FakeClock) timer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now + d, c: make(chan time.Time, 1)}
	c.timers[t] = struct{}{}
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[t]
		delete(c.timers, t)
		return ok
	}
}

// Advance moves the clock by d and fires the timers that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	for t := range c.timers {
		if t.at <= c.now {
			t.c <- time.Unix(0, 0).Add(c.now)
			delete(c.timers, t)
		}
	}
}

// Timers returns the number of timers waiting to fire.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
