package hubapi

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time { return c.now }
func (c *stepClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestAdaptiveLimits follows one bucket through 429s and successes: the first 429 sets the S1 rate,
// each further one halves it down to an eighth, and runs of successes raise it until it is lifted.
func TestAdaptiveLimits(t *testing.T) {
	p := newPacer(&stepClock{now: time.Unix(0, 0)}, nil)
	start := adaptiveStart[classQuery]
	if p.limit(classQuery) != rate.Inf {
		t.Fatal("an adaptive bucket must start unlimited")
	}
	p.throttled(classQuery)
	if got := p.limit(classQuery); got != start {
		t.Fatalf("after one 429: %v, want %v", got, start)
	}
	p.throttled(classQuery)
	if got := p.limit(classQuery); got != start/2 {
		t.Fatalf("after two: %v, want %v", got, start/2)
	}
	for range 10 {
		p.throttled(classQuery)
	}
	if got := p.limit(classQuery); got != start/adaptiveFloor {
		t.Fatalf("floor: %v, want %v", got, start/adaptiveFloor)
	}
	for range adaptiveStreak - 1 {
		p.succeeded(classQuery)
	}
	if got := p.limit(classQuery); got != start/adaptiveFloor {
		t.Fatalf("raised too early: %v", got)
	}
	p.succeeded(classQuery)
	if got, want := p.limit(classQuery), start/adaptiveFloor*1.25; got != want {
		t.Fatalf("after a streak: %v, want %v", got, want)
	}
	for range 1000 {
		p.succeeded(classQuery)
	}
	if got := p.limit(classQuery); got != rate.Inf {
		t.Fatalf("after many successes: %v, want unlimited", got)
	}
	if p.limit(classJobs) != rate.Inf {
		t.Error("another bucket changed")
	}
	// Known quotas do not adapt.
	q, _ := TierQuotas("S1", 1)
	fixed := newPacer(&stepClock{}, &q)
	fixed.throttled(classJobs)
	if got := fixed.limit(classJobs); got != rate.Limit(100.0/60) {
		t.Errorf("fixed bucket moved to %v", got)
	}
}

// TestPacerCancel: a pacing wait ends with the context and gives its reservation back.
func TestPacerCancel(t *testing.T) {
	q, _ := TierQuotas("S1", 1)
	p := newPacer(systemClock{}, &q)
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.wait(ctx, classQuery); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := p.wait(ctx, classQuery); err == nil {
		t.Error("wait with a cancelled context succeeded")
	}
}

// TestBackoffCap checks the exponential schedule with the jitter fixed at its maximum, including
// attempts far past the cap (no overflow).
func TestBackoffCap(t *testing.T) {
	c, err := newClient("h", Options{MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.jitter = func(n time.Duration) time.Duration { return n }
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		if got := c.backoff(i, nil); got != w*time.Second {
			t.Errorf("attempt %d: %v, want %v", i, got, w*time.Second)
		}
	}
	if got := c.backoff(100, nil); got != 10*time.Second {
		t.Errorf("attempt 100: %v", got)
	}
	c.jitter = func(time.Duration) time.Duration { return 0 }
	if got := c.backoff(2, nil); got != 2*time.Second {
		t.Errorf("least jitter: %v, want half of 4s", got)
	}
}
