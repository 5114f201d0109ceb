package hubapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// gaps gives the fake time between consecutive requests.
func gaps(reqs []recorded) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(reqs); i++ {
		out = append(out, reqs[i].At.Sub(reqs[i-1].At))
	}
	return out
}

// TestPacingToQuotas checks that with a tier's quotas the client spends each budget evenly: on S1 with
// one unit, 100 job operations a minute (one per 600ms), 20 queries a minute (one per 3s), 100 twin
// reads a second; on S3 with 2 units, 10,000 job operations a minute; unlimited, no waiting at all.
func TestPacingToQuotas(t *testing.T) {
	s1, _ := hubapi.TierQuotas("S1", 1)
	s3, _ := hubapi.TierQuotas("S3", 2)
	unl, _ := hubapi.TierQuotas("unlimited", 1)
	getJob := func(c *hubapi.Client) error { _, err := c.GetJob(context.Background(), "j"); return err }
	query := func(c *hubapi.Client) error {
		_, err := c.Query(context.Background(), "SELECT * FROM devices", 0).NextPage(context.Background())
		return err
	}
	getTwin := func(c *hubapi.Client) error { _, err := c.GetTwin(context.Background(), "d"); return err }
	tests := []struct {
		name  string
		q     hubapi.Quotas
		run   func(*hubapi.Client) error
		reply string
		gap   time.Duration
	}{
		{"S1 jobs", s1, getJob, jobJSON, 600 * time.Millisecond},
		{"S1 queries", s1, query, "[]", 3 * time.Second},
		{"S1 twin reads", s1, getTwin, twinJSON, 10 * time.Millisecond},
		{"S3x2 jobs", s3, getJob, jobJSON, 6 * time.Millisecond},
		{"unlimited", unl, getJob, jobJSON, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
			c := hub.client(hubapi.Options{Quotas: &tt.q})
			for range 5 {
				hub.queue(ok(tt.reply))
				if err := tt.run(c); err != nil {
					t.Fatal(err)
				}
			}
			for i, g := range gaps(hub.requests()) {
				if d := g - tt.gap; d < -time.Millisecond || d > time.Millisecond {
					t.Errorf("gap %d = %v, want %v", i, g, tt.gap)
				}
			}
		})
	}
}

// TestPacingBudgetsAreSeparate: spending the query budget does not delay job operations.
func TestPacingBudgetsAreSeparate(t *testing.T) {
	s1, _ := hubapi.TierQuotas("S1", 1)
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	c := hub.client(hubapi.Options{Quotas: &s1})
	hub.queue(ok("[]"), ok(jobJSON))
	if _, err := c.Query(context.Background(), "SELECT * FROM devices", 0).NextPage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetJob(context.Background(), "j"); err != nil {
		t.Fatal(err)
	}
	if w := clock.Waits(); len(w) != 0 {
		t.Errorf("waits %v, want none", w)
	}
}

// TestAdaptivePacing: without quotas the client does not wait until the hub throttles; after a 429 it
// paces that budget (jobs: to the Free/S1 rate of one per 600ms), leaving the others alone.
func TestAdaptivePacing(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	c := hub.client(hubapi.Options{})
	for range 3 {
		hub.queue(ok(jobJSON))
		if _, err := c.GetJob(context.Background(), "j"); err != nil {
			t.Fatal(err)
		}
	}
	for i, g := range gaps(hub.requests()) {
		if g != 0 {
			t.Errorf("unthrottled gap %d = %v, want 0", i, g)
		}
	}
	hub.queue(throttled(map[string]string{"Retry-After": "0.1"}), ok(jobJSON))
	if _, err := c.GetJob(context.Background(), "j"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		hub.queue(ok(jobJSON))
		if _, err := c.GetJob(context.Background(), "j"); err != nil {
			t.Fatal(err)
		}
	}
	g := gaps(hub.requests())
	for i := 4; i < len(g); i++ {
		if g[i] < 599*time.Millisecond {
			t.Errorf("gap %d after the 429 = %v, want at least 600ms", i, g[i])
		}
	}
	// Twin reads were not throttled and stay unpaced.
	before := len(hub.requests())
	for range 2 {
		hub.queue(ok(twinJSON))
		if _, err := c.GetTwin(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
	}
	if g := gaps(hub.requests()[before:]); g[0] != 0 {
		t.Errorf("twin reads paced by a jobs 429: %v", g)
	}
}

// TestConcurrentCalls: one client serves many goroutines at once, paced and retrying (run with -race).
func TestConcurrentCalls(t *testing.T) {
	s1, _ := hubapi.TierQuotas("S1", 1)
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	c := hub.client(hubapi.Options{Quotas: &s1})
	const n = 20
	hub.queue(unavailable(), throttled(nil))
	for range n {
		hub.queue(ok(twinJSON))
	}
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.GetTwin(context.Background(), "d")
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(hub.requests()); got != n+2 {
		t.Errorf("%d requests, want %d", got, n+2)
	}
}
