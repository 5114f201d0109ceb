package hubapi

import (
	"context"
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// opClass is the throttle bucket of IoT Hub that an operation draws from (reference §8).
type opClass int

const (
	classRegistry   opClass = iota // identity registry: get, create, list devices
	classTwinRead                  // GET /twins
	classTwinUpdate                // PATCH/PUT /twins
	classQuery                     // POST /devices/query, devices.jobs included
	classJobs                      // jobs v2 create, get, cancel, list
	classMethod                    // direct-method invoke
	numClasses
)

// adaptiveStart is the rate (per second) a bucket drops to at its first 429 when the hub's tier is not
// known: the Free/S1 quota of one unit, the smallest a hub that throttled us can have. Direct methods
// are metered by payload size, not count; 10/s is our own guess for small payloads.
var adaptiveStart = [numClasses]rate.Limit{
	classRegistry:   100.0 / 60,
	classTwinRead:   100,
	classTwinUpdate: 50,
	classQuery:      20.0 / 60,
	classJobs:       100.0 / 60,
	classMethod:     10,
}

// Adaptive tuning: each 429 halves the rate (down to adaptiveStart/adaptiveFloor); every
// adaptiveStreak successes raise it by a quarter, and past adaptiveCeiling × the start it is lifted.
const (
	adaptiveFloor   = 8
	adaptiveStreak  = 20
	adaptiveCeiling = 4
)

// pacer spaces requests per throttle bucket: to the hub's quotas when they are known, otherwise
// adaptively, unlimited until the hub first answers 429.
type pacer struct {
	clk      Clock
	adaptive bool
	buckets  [numClasses]*bucket
}

type bucket struct {
	lim    *rate.Limiter
	mu     sync.Mutex
	streak int
}

// newPacer builds buckets from q; nil q means adaptive. A bucket whose quota is infinite or unknown
// (registry and methods have no figure in Quotas) is not paced.
func newPacer(clk Clock, q *Quotas) *pacer {
	p := &pacer{clk: clk, adaptive: q == nil}
	for c := range numClasses {
		limit := rate.Inf
		if q != nil {
			switch c {
			case classTwinRead:
				limit = perSecond(q.TwinReadsPerSec)
			case classTwinUpdate:
				limit = perSecond(q.TwinUpdatesPerSec)
			case classQuery:
				limit = perSecond(q.QueriesPerMinute / 60)
			case classJobs:
				limit = perSecond(q.JobOpsPerMinute / 60)
			}
		}
		// A burst of one spends the budget evenly: the hub only shapes short bursts before it
		// answers 429, and other clients of the same hub may have spent part of it.
		p.buckets[c] = &bucket{lim: rate.NewLimiter(limit, 1)}
	}
	return p
}

func perSecond(v float64) rate.Limit {
	if v <= 0 || math.IsInf(v, 1) || math.IsNaN(v) {
		return rate.Inf
	}
	return rate.Limit(v)
}

// wait blocks until the bucket of class allows one more request, or ctx ends.
func (p *pacer) wait(ctx context.Context, class opClass) error {
	b := p.buckets[class]
	now := p.clk.Now()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return nil
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if err := sleep(ctx, p.clk, d); err != nil {
		r.CancelAt(p.clk.Now())
		return err
	}
	return nil
}

// throttled lowers an adaptive bucket's rate after a 429.
func (p *pacer) throttled(class opClass) {
	if !p.adaptive {
		return
	}
	b := p.buckets[class]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak = 0
	cur := b.lim.Limit()
	start := adaptiveStart[class]
	next := cur / 2
	if cur == rate.Inf || cur > start*adaptiveCeiling {
		next = start
	}
	next = max(next, start/adaptiveFloor)
	b.lim.SetLimitAt(p.clk.Now(), next)
}

// succeeded raises an adaptive bucket's rate again after a run of successes.
func (p *pacer) succeeded(class opClass) {
	if !p.adaptive {
		return
	}
	b := p.buckets[class]
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.lim.Limit()
	if cur == rate.Inf {
		return
	}
	if b.streak++; b.streak < adaptiveStreak {
		return
	}
	b.streak = 0
	next := cur * 1.25
	if next > adaptiveStart[class]*adaptiveCeiling {
		next = rate.Inf
	}
	b.lim.SetLimitAt(p.clk.Now(), next)
}

// limit is the current rate of a bucket (for tests and diagnostics).
func (p *pacer) limit(class opClass) rate.Limit { return p.buckets[class].lim.Limit() }
