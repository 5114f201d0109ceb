package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
)

// A fleet of which 30% start offline and come online 3 s after the hub starts.
const intermittentFleet = `
groups:
  - name: all
    count: 40
    idPrefix: dev-
    tags: {ring: all}
    behavior: {offline: 30%, onlineAfter: 3s, methodLatency: 5ms}
`

const retryPlan = `
version: 1
name: retried
action:
  directMethod: {name: install, payload: {version: "2"}}
onFailure: halt
defaults:
  batch: {size: 10, growth: 2}
  success: {minSuccessRate: 100%, minDevices: 1}
  retry: {attempts: 6, backoff: 500ms, within: 1m}
waves:
  - {name: all, target: "tags.ring = 'all'"}
`

// checkInvokedOnce checks, from the emulator's per-device counts, that every device of the fleet
// received the method exactly once, and that no device was called while offline more than once (by
// its batch's own job, which cannot know): retries never target a disconnected device.
func checkInvokedOnce(t *testing.T, srv *emulator.Server, devices int) {
	t.Helper()
	stats := srv.Stats()
	if len(stats.Device) != devices {
		t.Errorf("%d devices have counts, want %d", len(stats.Device), devices)
	}
	offline := 0
	for id, d := range stats.Device {
		if d.MethodsDelivered != 1 {
			t.Errorf("%s: method delivered %d times, want once", id, d.MethodsDelivered)
		}
		switch missed := d.MethodInvocations - d.MethodsDelivered; {
		case missed == 1:
			offline++
		case missed != 0:
			t.Errorf("%s: invoked %d times while offline; a retry targeted it while disconnected", id, missed)
		}
	}
	if offline == 0 {
		t.Error("no device was called while offline: the test does not exercise retries")
	}
}

func TestRetryReachesDevicesThatComeOnline(t *testing.T) {
	srv, c := enginetest.Hub(t, intermittentFleet, emulator.Options{})
	p := enginetest.Plan(t, retryPlan)
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusDone {
		t.Fatalf("status %s (%s), want done", res.Status, res.Reason)
	}
	checkInvokedOnce(t, srv, 40)
	st := r.state(t)
	w := st.Waves[0]
	if w.Counts != (engine.Counts{Targeted: 40, Succeeded: 40}) {
		t.Errorf("wave counts %+v: each device counts once, by its last attempt", w.Counts)
	}
	b := w.Batches[0]
	if len(b.Retries) == 0 || b.Counts.Succeeded != 10 {
		t.Fatalf("first batch %+v: want retries and every device succeeded", b)
	}
	last := b.Retries[len(b.Retries)-1]
	if last.Devices == 0 || last.Waited != 0 || last.Counts.Succeeded != last.Devices {
		t.Errorf("last retry %+v: want its devices reached and none left waiting", last)
	}
	for _, rt := range b.Retries {
		for _, j := range rt.Jobs {
			if !strings.HasSuffix(j.ID, "-r"+string(rune('0'+rt.Attempt))) {
				t.Errorf("retry job id %s of attempt %d", j.ID, rt.Attempt)
			}
		}
	}
	rep, err := engine.BuildReport(r.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	retried := 0
	for _, d := range rep.Devices {
		if d.Outcome != engine.Succeeded {
			t.Errorf("%s: %s in the report", d.Device, d.Outcome)
		}
		if d.Attempt > 0 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("the report shows no device reached by a retry")
	}
	if r.rec.count(engine.EventRetry) == 0 || r.rec.count(engine.EventRetryDone) == 0 {
		t.Error("no retry events")
	}
}

// TestRetryAcrossNoWaitRuns runs the same rollout from cron: each --no-wait run advances it, waits for
// backoffs and jobs in between; still every device is invoked once.
func TestRetryAcrossNoWaitRuns(t *testing.T) {
	srv, c := enginetest.Hub(t, intermittentFleet, emulator.Options{})
	p := enginetest.Plan(t, retryPlan)
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitedForRetry := false
	for runs := 0; ; runs++ {
		res, err := engine.Apply(ctx, p, r.opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != engine.StatusRunning {
			if res.Status != engine.StatusDone {
				t.Fatalf("status %s (%s)", res.Status, res.Reason)
			}
			break
		}
		if res.Step == engine.StepWaitRetry {
			waitedForRetry = true
			if st := r.state(t); st.Waiting == nil || st.Waiting.Reason != "retry" {
				t.Errorf("waiting %+v, want the retry recorded for status", st.Waiting)
			}
		}
		if runs > 500 {
			t.Fatal("the rollout does not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !waitedForRetry {
		t.Error("no run waited for a retry")
	}
	checkInvokedOnce(t, srv, 40)
}

// TestVerifyCountsDisconnectedAsUnreachable: a twin update's verify waits for devices that are
// offline (they cannot report) until within, then judges them apart from failures, against
// maxUnreachable.
func TestVerifyCountsDisconnectedAsUnreachable(t *testing.T) {
	const fleet = `
groups:
  - name: all
    count: 20
    idPrefix: dev-
    tags: {ring: all}
    behavior: {offline: 20%, converge: {delay: 10ms}}
`
	const src = `
version: 1
name: verified
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 100%, minDevices: 1LIMIT}
  verify: {condition: "properties.reported.fw = '2'", minRate: 100%, within: 1s}
waves:
  - {name: all, target: "tags.ring = 'all'"}
onFailure: halt
`
	tests := []struct {
		name, limit string
		status      engine.Status
		reason      string
	}{
		{"within maxUnreachable", ", maxUnreachable: 25%", engine.StatusDone, ""},
		{"over maxUnreachable", ", maxUnreachable: 3", engine.StatusHalted, "4 devices disconnected without satisfying"},
		{"without maxUnreachable they fail the rate", "", engine.StatusHalted, "80% of devices satisfy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := enginetest.Hub(t, fleet, emulator.Options{})
			p := enginetest.Plan(t, strings.Replace(src, "LIMIT", tt.limit, 1))
			r := newRun(t, c, srv.Quotas(), p.Name)
			res := r.apply(t, p)
			if res.Status != tt.status || !strings.Contains(res.Reason, tt.reason) {
				t.Fatalf("apply ended %s (%s), want %s with %q", res.Status, res.Reason, tt.status, tt.reason)
			}
			if st := r.state(t); st.Waves[0].VerifyReads < 2 {
				t.Errorf("%d verify reads: a disconnected device is pending until within", st.Waves[0].VerifyReads)
			}
		})
	}
}
