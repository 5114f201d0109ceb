package enginetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// Hub starts an emulator serving fleet (fleet-file YAML; "" for an empty hub) with opts, and returns it
// with a client paced to its tier. Both are closed when the test ends.
func Hub(tb testing.TB, fleet string, opts emulator.Options) (*emulator.Server, *hubapi.Client) {
	tb.Helper()
	if fleet != "" {
		f, err := emulator.ParseFleet("fleet.yaml", []byte(fleet))
		if err != nil {
			tb.Fatalf("fleet: %v", err)
		}
		opts.Fleet = f
	}
	srv, err := emulator.Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv, Client(tb, srv, hubapi.Options{})
}

// Client connects to srv over loopback HTTP with its connection string, paced to its quotas unless
// opts.Quotas says otherwise.
func Client(tb testing.TB, srv *emulator.Server, opts hubapi.Options) *hubapi.Client {
	tb.Helper()
	opts.PlainHTTP = true
	if opts.Quotas == nil {
		q := srv.Quotas()
		opts.Quotas = &q
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 20 * time.Millisecond
	}
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), opts)
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	return c
}

// Plan loads a plan from YAML text, failing the test on any error diagnostic.
func Plan(tb testing.TB, yaml string) *plan.Plan {
	tb.Helper()
	p, ds := plan.Load("plan.yaml", []byte(yaml))
	if ds.HasErrors() || p == nil {
		tb.Fatalf("plan: %v", ds)
	}
	return p
}

// Clock is a fake clock: Now is set by the test, and After advances it by the asked duration at once
// (after a real pause of at most a millisecond, so that pollers do not spin), so bakes and schedule
// windows take no wall time.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// After advances the clock by d and delivers the new time.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	real := d
	if real > time.Millisecond {
		real = time.Millisecond
	}
	ch := make(chan time.Time, 1)
	go func() {
		time.Sleep(real)
		c.mu.Lock()
		c.now = c.now.Add(d)
		t := c.now
		c.mu.Unlock()
		ch <- t
	}()
	return ch
}
