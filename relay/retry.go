package relay

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryPolicy decides how long to wait before the next attempt.
type RetryPolicy interface {
	// RetryDelay returns the delay after the given failed attempt (1 for
	// the first) that failed with err.
	RetryDelay(attempt int, err error) time.Duration
}

// RetryPolicyFunc adapts a function to RetryPolicy.
type RetryPolicyFunc func(attempt int, err error) time.Duration

// RetryDelay calls f.
func (f RetryPolicyFunc) RetryDelay(attempt int, err error) time.Duration { return f(attempt, err) }

// ExponentialRetry is exponential backoff with jitter, computed with
// github.com/cenkalti/backoff/v4. The zero value uses the defaults below.
type ExponentialRetry struct {
	// Initial is the delay after the first failure. Default 1s.
	Initial time.Duration
	// Multiplier grows the delay per attempt. Default 2.
	Multiplier float64
	// Max caps the delay. Default 1h.
	Max time.Duration
	// Jitter is the randomization factor in [0, 1): the delay is drawn from
	// [d·(1-Jitter), d·(1+Jitter)]. Default 0.25; a negative value disables
	// jitter.
	Jitter float64
}

// RetryDelay returns the backoff delay after the given attempt.
func (p ExponentialRetry) RetryDelay(attempt int, _ error) time.Duration {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = orDefault(p.Initial, time.Second)
	b.Multiplier = 2
	if p.Multiplier >= 1 {
		b.Multiplier = p.Multiplier
	}
	b.MaxInterval = orDefault(p.Max, time.Hour)
	switch {
	case p.Jitter < 0:
		b.RandomizationFactor = 0
	case p.Jitter == 0:
		b.RandomizationFactor = 0.25
	default:
		b.RandomizationFactor = min(p.Jitter, 0.99)
	}
	b.MaxElapsedTime = 0 // the entry's max attempts decides when to stop
	b.Reset()
	if attempt < 1 {
		attempt = 1
	}
	var d time.Duration
	for range min(attempt, 64) {
		d = b.NextBackOff()
	}
	return d
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
