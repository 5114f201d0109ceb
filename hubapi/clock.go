package hubapi

import (
	"context"
	"time"
)

// Clock is the source of time for token expiry, backoff waits and pacing. Tests pass a fake (see
// hubapitest.Clock) so that retries and renewals take no wall time.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed, like time.After.
	After(d time.Duration) <-chan time.Time
}

// WallClock is the real clock, the default of every Clock option.
var WallClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleep waits d on clk, returning early with the context's error when ctx ends first.
func sleep(ctx context.Context, clk Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clk.After(d):
		return nil
	}
}
