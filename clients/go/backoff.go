package btfd

import (
	"context"
	"math/rand"
	"time"
)

// backoff is the retry rule every client path shares (gRPC calls and fd requests), as in
// btfd/retry.py: sleeps start at first and double up to max, each jittered to 50-100%, and
// never reach past budget after the first attempt (attempts included, not only sleeps).
type backoff struct {
	deadline time.Time
	first    time.Duration
	next     time.Duration
	max      time.Duration
}

func newBackoff(budget time.Duration) *backoff {
	first := 50 * time.Millisecond
	return &backoff{deadline: time.Now().Add(budget), first: first, next: first, max: time.Second}
}

// pause returns how long to sleep before the next attempt; false: the budget is spent.
func (b *backoff) pause() (time.Duration, bool) {
	left := time.Until(b.deadline)
	if left <= 0 {
		return 0, false
	}
	d := time.Duration(float64(b.next) * (0.5 + rand.Float64()/2))
	if d > left {
		d = left
	}
	b.next *= 2
	if b.next > b.max {
		b.next = b.max
	}
	return d, true
}

// progress restarts the backoff from its first step (a stream delivered a page).
func (b *backoff) progress() { b.next = b.first }

// wait sleeps d or until ctx is done (then its error).
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
