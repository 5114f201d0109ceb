package emulator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/iot-rollout/rollout/hubapi"
)

// Quota names, as they appear in Stats and /_emulator/stats.
const (
	QuotaJobOps       = "jobOperations"
	QuotaJobDeviceOps = "jobDeviceOperations"
	QuotaQueries      = "queries"
	QuotaTwinReads    = "twinReads"
	QuotaTwinUpdates  = "twinUpdates"
	QuotaRegistryOps  = "registryOperations"
)

// limits enforces a tier's rate quotas with token buckets. IoT Hub traffic-shapes: it accepts a short
// burst above the rate before it answers 429; the emulator's burst is ten seconds' worth of the rate
// (at least one request), a choice the reference leaves open.
type limits struct {
	q       hubapi.Quotas
	buckets map[string]*rate.Limiter
	use     map[string]*quotaCounter
}

type quotaCounter struct {
	limit           float64 // per second; +Inf when unlimited
	used, throttled atomic.Int64
}

func newLimits(q hubapi.Quotas) *limits {
	registry := 100.0 / 60 * float64(q.Units)
	if q.Tier == "S3" {
		registry = 5000.0 / 60 * float64(q.Units)
	}
	if q.Unlimited() {
		registry = math.Inf(1)
	}
	perSec := map[string]float64{
		QuotaJobOps:       q.JobOpsPerMinute / 60,
		QuotaJobDeviceOps: q.JobDeviceOpsPerSec,
		QuotaQueries:      q.QueriesPerMinute / 60,
		QuotaTwinReads:    q.TwinReadsPerSec,
		QuotaTwinUpdates:  q.TwinUpdatesPerSec,
		QuotaRegistryOps:  registry,
	}
	l := &limits{q: q, buckets: map[string]*rate.Limiter{}, use: map[string]*quotaCounter{}}
	for name, r := range perSec {
		l.use[name] = &quotaCounter{limit: r}
		if math.IsInf(r, 1) {
			l.buckets[name] = rate.NewLimiter(rate.Inf, 0)
			continue
		}
		burst := int(math.Ceil(r * 10))
		if name == QuotaJobDeviceOps {
			// Job device operations are the hub's own job runner working at the documented rate, not
			// client traffic it shapes, so they get no idle burst to speak of: a tenth of a second's
			// worth absorbs timer jitter without letting a job finish faster than count ÷ rate.
			burst = max(1, int(math.Ceil(r/10)))
		}
		l.buckets[name] = rate.NewLimiter(rate.Limit(r), max(burst, 1))
	}
	return l
}

// allow takes one request from a quota or answers 429 ThrottlingException.
func (l *limits) allow(name string) error {
	c := l.use[name]
	b := l.buckets[name]
	if !b.Allow() {
		c.throttled.Add(1)
		// Retry-After says when a token will be there; the reservation is only a question.
		now := time.Now()
		r := b.ReserveN(now, 1)
		wait := r.DelayFrom(now)
		r.CancelAt(now)
		e := hubErr(hubapi.CodeThrottlingException, "Throttling: the %s quota of the %s tier (%s) is exhausted; retry later", name, l.q.Tier, rateText(c.limit))
		e.retryAfter = max(1, int(math.Ceil(wait.Seconds())))
		return e
	}
	c.used.Add(1)
	return nil
}

func rateText(perSec float64) string {
	if perSec < 1 {
		return strconv.FormatFloat(perSec*60, 'f', -1, 64) + "/min"
	}
	return strconv.FormatFloat(perSec, 'f', -1, 64) + "/s"
}

// Faults injects failures into a seeded share of IoT Hub requests (never into /_emulator/ requests), to
// test clients' retries. Shares are fractions in [0, 1] and are drawn in this order for each request.
type Faults struct {
	Throttle    float64       // answered 429 ThrottlingException
	ServerError float64       // answered 500 ServerError
	Unavailable float64       // answered 503 ServiceUnavailable
	Drop        float64       // connection closed without an answer
	Slow        float64       // answered normally after SlowDelay
	SlowDelay   time.Duration // default 2s
}

// Any reports whether any fault is configured.
func (f Faults) Any() bool {
	return f.Throttle > 0 || f.ServerError > 0 || f.Unavailable > 0 || f.Drop > 0 || f.Slow > 0
}

// ParseFaults reads the --faults syntax: comma-separated NAME=SHARE items, NAME one of 429, 500, 503,
// drop and slow; slow takes an optional delay after a colon. Example: "429=5%,503=1%,slow=10%:2s".
func ParseFaults(s string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return Faults{}, fmt.Errorf("faults: %q is not NAME=SHARE (NAME: 429, 500, 503, drop, slow)", item)
		}
		delay := ""
		if name == "slow" {
			val, delay, _ = strings.Cut(val, ":")
		}
		v, err := ParseShare(val)
		if err != nil {
			return Faults{}, fmt.Errorf("faults: %s: %v", name, err)
		}
		switch name {
		case "429":
			f.Throttle = v
		case "500":
			f.ServerError = v
		case "503":
			f.Unavailable = v
		case "drop":
			f.Drop = v
		case "slow":
			f.Slow = v
			if delay != "" {
				d, err := time.ParseDuration(delay)
				if err != nil || d < 0 {
					return Faults{}, fmt.Errorf("faults: slow delay %q is not a duration such as 2s", delay)
				}
				f.SlowDelay = d
			}
		default:
			return Faults{}, fmt.Errorf("faults: unknown fault %q (want 429, 500, 503, drop or slow)", name)
		}
	}
	if f.Throttle+f.ServerError+f.Unavailable+f.Drop > 1 {
		return Faults{}, fmt.Errorf("faults: the shares of 429, 500, 503 and drop add up to more than 100%%")
	}
	return f, nil
}

// faultKind is what the injector decided for one request.
type faultKind int

const (
	faultNone faultKind = iota
	faultThrottle
	faultServerError
	faultUnavailable
	faultDrop
)

// faultInjector draws faults from a generator seeded by Options.Seed, so a run's sequence of faults is
// reproducible for the same sequence of requests.
type faultInjector struct {
	f   Faults
	mu  sync.Mutex
	rng *rand.Rand
	n   atomic.Int64
}

func newFaultInjector(f Faults, seed int64) *faultInjector {
	if f.Slow > 0 && f.SlowDelay == 0 {
		f.SlowDelay = 2 * time.Second
	}
	return &faultInjector{f: f, rng: rand.New(rand.NewPCG(uint64(seed), 0x726f6c6c6f7574))}
}

// draw decides one request's fault and whether it is slowed.
func (fi *faultInjector) draw() (faultKind, time.Duration) {
	if !fi.f.Any() {
		return faultNone, 0
	}
	fi.mu.Lock()
	u, v := fi.rng.Float64(), fi.rng.Float64()
	fi.mu.Unlock()
	var slow time.Duration
	if v < fi.f.Slow {
		slow = fi.f.SlowDelay
	}
	f := fi.f
	switch {
	case u < f.Throttle:
		return faultThrottle, slow
	case u < f.Throttle+f.ServerError:
		return faultServerError, slow
	case u < f.Throttle+f.ServerError+f.Unavailable:
		return faultUnavailable, slow
	case u < f.Throttle+f.ServerError+f.Unavailable+f.Drop:
		return faultDrop, slow
	}
	return faultNone, slow
}
