package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/statestore/bolt"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []engine.Event
}

func (r *recorder) Event(e engine.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) count(t engine.EventType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == t {
			n++
		}
	}
	return n
}

type run struct {
	hub   engine.Hub
	store *engine.Store
	rec   *recorder
	opts  engine.Options
}

func newRun(tb testing.TB, hub engine.Hub, q hubapi.Quotas, name string) *run {
	tb.Helper()
	s, err := engine.OpenStore(context.Background(), bolt.New(tb.TempDir()), name)
	if err != nil {
		tb.Fatal(err)
	}
	rec := &recorder{}
	return &run{hub: hub, store: s, rec: rec, opts: engine.Options{Hub: hub, Store: s, Quotas: q, Observer: rec,
		VerifyPoll: 50 * time.Millisecond, ApprovalPoll: 20 * time.Millisecond}}
}

func (r *run) apply(tb testing.TB, p *plan.Plan) *engine.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := engine.Apply(ctx, p, r.opts)
	if err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	return res
}

func (r *run) state(tb testing.TB) *engine.State {
	tb.Helper()
	st, err := r.store.Load()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// twins reads every twin's tags and desired properties (without metadata), by device id.
func twins(tb testing.TB, c *hubapi.Client) map[string]string {
	tb.Helper()
	rows, err := hubapi.Collect[hubapi.Twin](context.Background(), c.Query(context.Background(), "SELECT * FROM devices", 100))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, t := range rows {
		t, err := c.GetTwin(context.Background(), t.DeviceID)
		if err != nil {
			tb.Fatal(err)
		}
		desired := map[string]any{}
		if t.Properties != nil {
			for k, v := range t.Properties.Desired {
				if !strings.HasPrefix(k, "$") {
					desired[k] = v
				}
			}
		}
		b, _ := json.Marshal(map[string]any{"tags": t.Tags, "desired": desired})
		out[t.DeviceID] = string(b)
	}
	return out
}

const twinFleet = `
groups:
  - name: canary
    count: 4
    idPrefix: canary-
    tags: {ring: canary, model: x}
    reported: {firmware: {version: "1.0"}}
    behavior: {converge: {delay: 10ms}}
  - name: eu
    count: 12
    idPrefix: eu-
    tags: {ring: eu, model: x}
    desired: {firmware: {version: "1.0", channel: beta}}
    behavior: {converge: {delay: 10ms}}
  - name: rest
    count: 20
    idPrefix: rest-
    tags: {ring: rest, model: x}
    behavior: {converge: {delay: 10ms}}
  - name: other
    count: 5
    idPrefix: other-
    tags: {model: y}
`

const twinPlan = `
version: 1
name: fw-two
fleet: "tags.model = 'x'"
action:
  twinUpdate:
    tags: {fwChannel: stable}
    desired: {firmware: {version: "2.0"}}
defaults:
  timeout: 60s
  batch: {size: 3, growth: 2}
  success: {minSuccessRate: 90%, maxFailures: 0, minDevices: 1}
  bake: 0s
waves:
  - name: canary
    target: "tags.ring = 'canary'"
  - name: eu
    target: "tags.ring = 'eu'"
    verify: {condition: "properties.reported.firmware.version = '2.0'", minRate: 100%, within: 20s}
  - name: rest
    target: "*"
onFailure: rollback
`

func TestApplyEveryWavePasses(t *testing.T) {
	srv, c := enginetest.Hub(t, twinFleet, emulator.Options{})
	p := enginetest.Plan(t, twinPlan)
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusDone {
		t.Fatalf("status %s (%s), want done", res.Status, res.Reason)
	}
	st := r.state(t)
	wantDevices := []int{4, 12, 20}
	wantBatches := []int{2, 3, 3} // 3+1; 3+6+3; 3+6+11
	for i, w := range st.Waves {
		if w.Status != engine.StatusDone || w.DeviceCount != wantDevices[i] || len(w.Batches) != wantBatches[i] {
			t.Errorf("wave %s: status %s, %d devices, %d batches; want done, %d, %d", w.Name, w.Status, w.DeviceCount,
				len(w.Batches), wantDevices[i], wantBatches[i])
		}
		if w.Counts.Succeeded != wantDevices[i] || w.Counts.Targeted != wantDevices[i] {
			t.Errorf("wave %s counts %+v", w.Name, w.Counts)
		}
	}
	if !st.Waves[1].VerifyOK {
		t.Error("eu verify not recorded as passed")
	}
	for id, tw := range twins(t, c) {
		changed := strings.Contains(tw, `"fwChannel":"stable"`) && strings.Contains(tw, `"version":"2.0"`)
		if changed == strings.HasPrefix(id, "other-") {
			t.Errorf("%s: twin %s (devices outside the fleet must stay untouched, all others change)", id, tw)
		}
	}
	// Every device got exactly one twin patch.
	stats := srv.Stats()
	for id, d := range stats.Device {
		if !strings.HasPrefix(id, "other-") && d.TwinPatches != 1 {
			t.Errorf("%s: %d twin patches", id, d.TwinPatches)
		}
	}
	// A second apply of a done rollout changes nothing.
	res = r.apply(t, p)
	if res.Status != engine.StatusDone {
		t.Errorf("second apply: %s", res.Status)
	}
	if got := srv.Stats(); len(got.Jobs) != len(stats.Jobs) {
		t.Errorf("second apply created jobs: %d job events, was %d", len(got.Jobs), len(stats.Jobs))
	}
	rep, err := engine.BuildReport(r.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Devices) != 36 {
		t.Errorf("report has %d devices, want 36", len(rep.Devices))
	}
	for _, d := range rep.Devices {
		if d.Outcome != engine.Succeeded {
			t.Errorf("report: %+v", d)
		}
	}
}

func TestRollbackRestoresPriorTwins(t *testing.T) {
	// eu devices never report the firmware back, so eu's verify fails and the rollout rolls back. The
	// fleet holds devices with different prior values and devices lacking the patched properties.
	fleet := `
groups:
  - name: canary
    count: 4
    idPrefix: canary-
    tags: {ring: canary, model: x, fwChannel: beta}
    desired: {firmware: {version: "1.0", uri: "old"}}
    behavior: {converge: {delay: 10ms}}
  - name: eu
    count: 9
    idPrefix: eu-
    tags: {ring: eu, model: x}
    behavior: {converge: {failure: 100%}}
devices:
  - {deviceId: odd-1, tags: {ring: canary, model: x, fwChannel: {nested: true}}, properties: {desired: {firmware: 7}}}
  - {deviceId: odd-2, tags: {ring: eu, model: x}, properties: {desired: {firmware: {version: "0.9", extra: [1, 2]}}}}
`
	srv, c := enginetest.Hub(t, fleet, emulator.Options{})
	before := twins(t, c)
	p := enginetest.Plan(t, strings.Replace(twinPlan, "within: 20s", "within: 300ms", 1))
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, want rolledBack", res.Status)
	}
	if !strings.Contains(res.Reason, "verify") {
		t.Errorf("reason %q does not name verify", res.Reason)
	}
	after := twins(t, c)
	if !reflect.DeepEqual(before, after) {
		for id := range before {
			if before[id] != after[id] {
				t.Errorf("%s: before %s\n after %s", id, before[id], after[id])
			}
		}
	}
	st := r.state(t)
	if st.Rollback == nil || !st.Rollback.Done || st.Rollback.Devices != 15 {
		t.Errorf("rollback progress %+v, want done with 15 devices", st.Rollback)
	}
	if st.Waves[2].Status != engine.StatusPending {
		t.Errorf("wave rest is %s; a rolled-back rollout must not start later waves", st.Waves[2].Status)
	}
	// Applying again reports the rollback and changes nothing.
	if res := r.apply(t, p); res.Status != engine.StatusRolledBack {
		t.Errorf("apply after rollback: %s", res.Status)
	}
	if r.rec.count(engine.EventRolledBack) != 1 {
		t.Errorf("%d rolledBack events", r.rec.count(engine.EventRolledBack))
	}
}

const methodPlan = `
version: 1
name: reboot
action:
  directMethod: {name: install, payload: {v: 2}, responseTimeout: 5s}
defaults:
  timeout: 30s
  batch: {size: 5, growth: 2}
  success: {minSuccessRate: 80%, maxFailures: 3, minDevices: 5}
waves:
  - name: canary
    target: "tags.ring = 'canary'"
  - name: eu
    target: "tags.ring = 'eu'"
  - name: rest
    target: "*"
onFailure: ONFAIL
rollback:
  directMethod: {name: revert, payload: {}}
`

func methodPlanWith(onFailure string) string {
	return strings.Replace(methodPlan, "ONFAIL", onFailure, 1)
}

const methodFleet = `
groups:
  - name: canary
    count: 6
    idPrefix: canary-
    tags: {ring: canary}
    behavior: {offline: 17%, methodLatency: 5ms}
  - name: eu
    count: 20
    idPrefix: eu-
    tags: {ring: eu}
    behavior: {methodFailure: 50%, methodLatency: 5ms}
  - name: rest
    count: 10
    idPrefix: rest-
    tags: {ring: rest}
`

func TestHaltOnThreshold(t *testing.T) {
	srv, c := enginetest.Hub(t, methodFleet, emulator.Options{})
	p := enginetest.Plan(t, methodPlanWith("halt"))
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusHalted {
		t.Fatalf("status %s, want halted", res.Status)
	}
	st := r.state(t)
	eu := st.Waves[1]
	if eu.Status != engine.StatusFailed {
		t.Errorf("eu is %s", eu.Status)
	}
	// The gate failed after the first batch of 5 (about half failed): later batches never ran.
	if eu.Batches[0].Status == engine.StatusDone || eu.Batches[1].Status != engine.StatusPending {
		t.Errorf("eu batches %+v", eu.Batches)
	}
	if eu.Counts.MethodError == 0 || eu.Counts.MethodError != eu.Counts.Failed {
		t.Errorf("eu counts %+v: failures must be method non-2xx", eu.Counts)
	}
	canary := st.Waves[0].Counts
	if canary.Unreachable != 1 || canary.Succeeded != 5 {
		t.Errorf("canary counts %+v, want 1 unreachable, 5 succeeded", canary)
	}
	stats := srv.Stats()
	for id, d := range stats.Device {
		if strings.HasPrefix(id, "rest-") && d.MethodInvocations != 0 {
			t.Errorf("%s invoked after the halt", id)
		}
		if d.MethodInvocations > 1 {
			t.Errorf("%s invoked %d times", id, d.MethodInvocations)
		}
	}
	if !strings.Contains(st.Reason, "eu") || !strings.Contains(st.Reason, "maxFailures") && !strings.Contains(st.Reason, "rate") {
		t.Errorf("reason %q", st.Reason)
	}
	// Halted is final for apply: a second run neither resumes nor creates jobs.
	if res := r.apply(t, p); res.Status != engine.StatusHalted {
		t.Errorf("second apply %s", res.Status)
	}
	if got := srv.Stats(); len(got.Jobs) != len(stats.Jobs) {
		t.Errorf("second apply created jobs")
	}
}

func TestMethodRollbackCompensatesReachedDevices(t *testing.T) {
	srv, c := enginetest.Hub(t, methodFleet, emulator.Options{})
	p := enginetest.Plan(t, methodPlanWith("rollback"))
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, want rolledBack", res.Status)
	}
	rep, err := engine.BuildReport(r.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reached := map[string]bool{}
	for _, d := range rep.Devices {
		if d.Outcome != engine.Unreachable {
			reached[d.Device] = true
		}
		if !d.RolledBack {
			t.Errorf("%s not marked rolled back", d.Device)
		}
	}
	if len(reached) != 5+5 {
		t.Errorf("%d devices reached, want 10 (5 online canaries, eu's first batch)", len(reached))
	}
	stats := srv.Stats()
	for id, d := range stats.Device {
		want := 0
		if reached[id] {
			want = 2 // install, then revert
		} else if strings.HasPrefix(id, "canary-") {
			want = 1 // offline: install attempted, never reached, so no revert
		}
		if d.MethodInvocations != want {
			t.Errorf("%s: %d invocations, want %d", id, d.MethodInvocations, want)
		}
	}
	st := r.state(t)
	if st.Rollback.Devices+st.Rollback.Failed != len(reached) {
		t.Errorf("rollback progress %+v, want %d devices", st.Rollback, len(reached))
	}
}

func TestVerifyUnderQueryLag(t *testing.T) {
	fleet := `
groups:
  - name: canary
    count: 6
    idPrefix: canary-
    tags: {ring: canary}
    behavior: {converge: {delay: 10ms}}
`
	plan := `
version: 1
name: lag
action:
  twinUpdate:
    desired: {firmware: {version: "2.0"}}
defaults:
  batch: {size: 10}
  success: {minSuccessRate: 100%%}
  verify: {condition: "properties.reported.firmware.version = '2.0'", minRate: 100%%, within: %s}
waves:
  - name: canary
    target: "*"
onFailure: halt
`
	t.Run("lag shorter than within", func(t *testing.T) {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{QueryLag: 700 * time.Millisecond})
		p := enginetest.Plan(t, fmt.Sprintf(plan, "10s"))
		r := newRun(t, c, srv.Quotas(), p.Name)
		if res := r.apply(t, p); res.Status != engine.StatusDone {
			t.Fatalf("status %s: %s", res.Status, res.Reason)
		}
		// The first reads saw the lagging view and did not fail the wave.
		if st := r.state(t); st.Waves[0].VerifyReads < 2 {
			t.Errorf("verify passed after %d reads; the lagging view cannot pass at once", st.Waves[0].VerifyReads)
		}
	})
	t.Run("lag longer than within", func(t *testing.T) {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{QueryLag: 5 * time.Second})
		p := enginetest.Plan(t, fmt.Sprintf(plan, "1s"))
		r := newRun(t, c, srv.Quotas(), p.Name)
		res := r.apply(t, p)
		if res.Status != engine.StatusHalted || !strings.Contains(res.Reason, "verify") {
			t.Fatalf("status %s (%s), want halted by verify", res.Status, res.Reason)
		}
		if st := r.state(t); st.Waves[0].VerifyReads < 2 {
			t.Errorf("verify failed after %d read(s)", st.Waves[0].VerifyReads)
		}
	})
}

func TestApprovalGate(t *testing.T) {
	srv, c := enginetest.Hub(t, twinFleet, emulator.Options{})
	p := enginetest.Plan(t, strings.Replace(twinPlan, "  - name: eu\n", "  - name: eu\n    approval: required\n", 1))
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	res := r.apply(t, p)
	if !res.Waiting || res.Step != engine.StepWaitApproval {
		t.Fatalf("result %+v, want waiting for approval", res)
	}
	if st := r.state(t); st.Waves[0].Status != engine.StatusDone || st.Waves[1].Status != engine.StatusPending {
		t.Fatalf("waves %s, %s", st.Waves[0].Status, st.Waves[1].Status)
	}
	// Still waiting on a second run.
	if res := r.apply(t, p); res.Step != engine.StepWaitApproval {
		t.Fatalf("second run: %+v", res)
	}
	var unknown *engine.UnknownWaveError
	if _, err := engine.Approve(r.store, "nope", engine.Approval{By: "tester", At: time.Now()}); !errors.As(err, &unknown) || !strings.Contains(err.Error(), "canary, eu, rest") {
		t.Errorf("Approve of an unknown wave: %v", err)
	}
	// A blocking apply waits, and continues once another process approves.
	r.opts.NoWait = false
	done := make(chan *engine.Result)
	go func() {
		res, err := engine.Apply(context.Background(), p, r.opts)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := engine.Approve(r.store, "eu", engine.Approval{By: "tester", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res == nil || res.Status != engine.StatusDone {
			t.Fatalf("after approval: %+v", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("apply did not continue after the approval")
	}
}

func TestScheduleWindowWithFakeClock(t *testing.T) {
	srv, c := enginetest.Hub(t, twinFleet, emulator.Options{})
	// Waves may start Mondays 02:00-03:00 UTC only.
	p := enginetest.Plan(t, twinPlan+`
schedule:
  windows:
    - {days: [mon], start: "02:00", end: "03:00", timeZone: UTC}
`)
	clk := enginetest.NewClock(time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)) // a Monday, 01:00
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.Clock, r.opts.NoWait = clk, true
	res := r.apply(t, p)
	if res.Step != engine.StepWaitSchedule || !res.Until.Equal(time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("result %+v, want waiting for 02:00", res)
	}
	if n := len(srv.Stats().Jobs); n != 0 {
		t.Fatalf("%d job events before the window", n)
	}
	clk.Set(time.Date(2026, 11, 30, 2, 59, 0, 0, time.UTC))
	for i := 0; i < 200; i++ {
		res = r.apply(t, p)
		if res.Step != engine.StepBatch && res.Step != engine.StepVerify {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every wave started inside the window: the fake clock barely moved.
	if res.Status != engine.StatusDone {
		t.Fatalf("result %+v, want done", res)
	}
	// Blocking mode waits through the closed window by the clock alone.
	srv2, c2 := enginetest.Hub(t, twinFleet, emulator.Options{})
	clk2 := enginetest.NewClock(time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)) // Tuesday
	r2 := newRun(t, c2, srv2.Quotas(), p.Name)
	r2.opts.Clock = clk2
	if res := r2.apply(t, p); res.Status != engine.StatusDone {
		t.Fatalf("blocking run: %+v", res)
	}
	if got := clk2.Now(); got.Before(time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("the run finished at %s, before the next window", got)
	}
}

func TestS1QuotasNoThrottling(t *testing.T) {
	if testing.Short() {
		t.Skip("paced to S1: takes a few seconds")
	}
	fleet := `
groups:
  - name: a
    count: 8
    idPrefix: a-
    tags: {ring: a}
  - name: b
    count: 12
    idPrefix: b-
    tags: {ring: b}
`
	srv, c := enginetest.Hub(t, fleet, emulator.Options{Tier: "S1"})
	p := enginetest.Plan(t, `
version: 1
name: s1
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  batch: {size: 4, growth: 2}
  success: {minSuccessRate: 100%}
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "*"}
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	start := time.Now()
	if res := r.apply(t, p); res.Status != engine.StatusDone {
		t.Fatalf("status %s", res.Status)
	}
	stats := srv.Stats()
	for name, q := range stats.Quotas {
		if q.Throttled != 0 {
			t.Errorf("quota %s throttled %d calls", name, q.Throttled)
		}
	}
	if len(stats.Errors) != 0 {
		t.Errorf("hub errors: %v", stats.Errors)
	}
	// 20 device operations at 10/s: at least 2 s of hub time.
	t.Logf("S1: 20 devices in %s", time.Since(start))
}

func TestFaultsGiveTheSameOutcome(t *testing.T) {
	outcome := func(faults emulator.Faults) (map[string]string, []engine.Counts) {
		srv, c := enginetest.Hub(t, methodFleet, emulator.Options{Faults: faults, Seed: 7})
		p := enginetest.Plan(t, strings.NewReplacer("maxFailures: 3", "maxFailures: 30", "minSuccessRate: 80%", "minSuccessRate: 10%").Replace(methodPlanWith("halt")))
		r := newRun(t, c, srv.Quotas(), p.Name)
		if res := r.apply(t, p); res.Status != engine.StatusDone {
			t.Fatalf("status %s (%s)", res.Status, res.Reason)
		}
		var counts []engine.Counts
		for _, w := range r.state(t).Waves {
			counts = append(counts, w.Counts)
		}
		inv := map[string]string{}
		for id, d := range srv.Stats().Device {
			inv[id] = fmt.Sprint(d.MethodInvocations)
		}
		if faults.Any() && srv.Stats().Faults == 0 {
			t.Error("no fault was injected")
		}
		return inv, counts
	}
	cleanInv, clean := outcome(emulator.Faults{})
	faultInv, faulty := outcome(emulator.Faults{Throttle: 0.10, ServerError: 0.05, Unavailable: 0.05})
	if !reflect.DeepEqual(clean, faulty) {
		t.Errorf("counts differ:\nclean  %+v\nfaults %+v", clean, faulty)
	}
	if !reflect.DeepEqual(cleanInv, faultInv) {
		t.Errorf("invocations differ:\nclean  %v\nfaults %v", cleanInv, faultInv)
	}
}

func TestPlanEditedMidRollout(t *testing.T) {
	srv, c := enginetest.Hub(t, twinFleet, emulator.Options{})
	p := enginetest.Plan(t, strings.Replace(twinPlan, "  - name: eu\n", "  - name: eu\n    approval: required\n", 1))
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	if res := r.apply(t, p); res.Step != engine.StepWaitApproval {
		t.Fatalf("%+v", res)
	}
	edited := enginetest.Plan(t, strings.Replace(twinPlan, "minSuccessRate: 90%", "minSuccessRate: 95%", 1))
	_, err := engine.Apply(context.Background(), edited, r.opts)
	var pc *engine.PlanChangedError
	if !errors.As(err, &pc) {
		t.Fatalf("Apply of an edited plan = %v, want *PlanChangedError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "rollout rollback fw-two") || !strings.Contains(msg, "restore the original plan") {
		t.Errorf("message %q does not say how to continue", msg)
	}
	// The original plan still continues.
	if res := r.apply(t, p); res.Step != engine.StepWaitApproval {
		t.Errorf("original plan: %+v", res)
	}
}

func TestConcurrentApplies(t *testing.T) {
	srv, c := enginetest.Hub(t, twinFleet, emulator.Options{})
	p := enginetest.Plan(t, twinPlan)
	r := newRun(t, c, srv.Quotas(), p.Name)
	unlock, err := r.store.Lock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	_, err = engine.Apply(context.Background(), p, r.opts)
	var le *engine.LockedError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "since 2026-01-02T03:04:05Z") {
		t.Fatalf("second apply: %v, want a LockedError naming the holder", err)
	}
	if len(srv.Stats().Jobs) != 0 {
		t.Error("the locked-out apply created jobs")
	}
	unlock()
	// Two applies racing: exactly one runs, the other is refused.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = engine.Apply(context.Background(), p, r.opts)
		}()
	}
	wg.Wait()
	locked := 0
	for _, err := range errs {
		if errors.As(err, &le) {
			locked++
		} else if err != nil {
			t.Error(err)
		}
	}
	if locked > 1 {
		t.Errorf("%d of 2 racing applies were refused", locked)
	}
	if st := r.state(t); st.Status != engine.StatusDone {
		t.Errorf("status %s", st.Status)
	}
	ids := []string{}
	for _, e := range srv.Stats().Jobs {
		if e.Status == hubapi.JobCompleted {
			ids = append(ids, e.JobID)
		}
	}
	sort.Strings(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Errorf("job %s completed twice", ids[i])
		}
	}
}

func TestStopAtSafePointThenResume(t *testing.T) {
	srv, c := enginetest.Hub(t, strings.Replace(methodFleet, "methodFailure: 50%", "methodFailure: 0%", 1), emulator.Options{})
	p := enginetest.Plan(t, methodPlanWith("halt"))
	r := newRun(t, c, srv.Quotas(), p.Name)
	stop := make(chan struct{})
	var once sync.Once
	r.opts.Stop = stop
	r.opts.Observer = engine.ObserverFunc(func(e engine.Event) {
		if e.Type == engine.EventJobCreated && e.Wave == 1 {
			once.Do(func() { close(stop) })
		}
	})
	res, err := engine.Apply(context.Background(), p, r.opts)
	if !errors.Is(err, engine.ErrStopped) || res == nil || !res.Stopped {
		t.Fatalf("Apply after Stop = %+v, %v; want stopped", res, err)
	}
	st := r.state(t)
	if st.Waves[0].Status != engine.StatusDone || st.Waves[1].Status != engine.StatusRunning {
		t.Fatalf("stopped at waves %s, %s", st.Waves[0].Status, st.Waves[1].Status)
	}
	// The stop came after the job was created: the next run re-attaches it and finishes.
	r.opts.Stop, r.opts.Observer = nil, r.rec
	if res := r.apply(t, p); res.Status != engine.StatusDone {
		t.Fatalf("resumed run: %+v", res)
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations > 1 {
			t.Errorf("%s invoked %d times", id, d.MethodInvocations)
		}
	}
	if n := r.rec.count(engine.EventJobCreated); n == 0 {
		t.Error("the resumed run created no job for the later batches")
	}
}

func TestNoWaitReturnsWhileJobsRun(t *testing.T) {
	// Slow devices keep the canary's job running after the first poll.
	fleet := `
groups:
  - {name: canary, count: 3, idPrefix: canary-, tags: {ring: canary}, behavior: {methodLatency: 300ms}}
`
	srv, c := enginetest.Hub(t, fleet, emulator.Options{})
	p := enginetest.Plan(t, `
version: 1
name: slow
action:
  directMethod: {name: install, payload: {}}
defaults:
  success: {minSuccessRate: 100%}
waves:
  - {name: canary, target: "*"}
onFailure: halt
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	res := r.apply(t, p)
	if res.Waiting || res.Step != engine.StepBatch || res.Status != engine.StatusRunning {
		t.Fatalf("first run: %+v; want progressing (not waiting) at the batch", res)
	}
	for i := 0; i < 100 && res.Status == engine.StatusRunning; i++ {
		time.Sleep(50 * time.Millisecond)
		res = r.apply(t, p)
	}
	if res.Status != engine.StatusDone {
		t.Fatalf("never finished: %+v", res)
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations != 1 {
			t.Errorf("%s invoked %d times over the runs", id, d.MethodInvocations)
		}
	}
}

func TestMixedActionsRollBackEachWaveItsWay(t *testing.T) {
	fleet := `
groups:
  - {name: canary, count: 4, idPrefix: canary-, tags: {ring: canary}, desired: {fw: "1"}}
  - {name: eu, count: 6, idPrefix: eu-, tags: {ring: eu}, behavior: {methodFailure: 50%}}
`
	srv, c := enginetest.Hub(t, fleet, emulator.Options{})
	before := twins(t, c)
	p := enginetest.Plan(t, `
version: 1
name: mixed
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 90%, minDevices: 1}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - name: eu
    target: "tags.ring = 'eu'"
    action:
      directMethod: {name: reboot, payload: {}}
rollback:
  directMethod: {name: undo, payload: {}}
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	if res := r.apply(t, p); res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s (%s)", res.Status, res.Reason)
	}
	if after := twins(t, c); !reflect.DeepEqual(before, after) {
		t.Errorf("twins not restored:\nbefore %v\nafter  %v", before, after)
	}
	for id, d := range srv.Stats().Device {
		want := 0
		if strings.HasPrefix(id, "eu-") {
			want = 2 // reboot, then undo
		}
		if d.MethodInvocations != want {
			t.Errorf("%s: %d invocations, want %d", id, d.MethodInvocations, want)
		}
		if strings.HasPrefix(id, "canary-") && d.TwinPatches != 2 {
			t.Errorf("%s: %d twin patches, want 2 (update, restore)", id, d.TwinPatches)
		}
	}
}

func TestFaultsGiveTheSameTwins(t *testing.T) {
	// Every wave passes except that eu's devices never report back: verify fails and every batch is
	// restored, through snapshot queries, jobs and twin patches that meet 20% injected failures.
	fleet := strings.Replace(twinFleet, "    desired: {firmware: {version: \"1.0\", channel: beta}}\n    behavior: {converge: {delay: 10ms}}",
		"    desired: {firmware: {version: \"1.0\", channel: beta}}\n    behavior: {converge: {failure: 100%}}", 1)
	run := func(faults emulator.Faults) (map[string]string, engine.Status) {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{Faults: faults, Seed: 11})
		p := enginetest.Plan(t, strings.Replace(twinPlan, "within: 20s", "within: 500ms", 1))
		r := newRun(t, c, srv.Quotas(), p.Name)
		res := r.apply(t, p)
		if faults.Any() && srv.Stats().Faults == 0 {
			t.Error("no fault was injected")
		}
		return twins(t, c), res.Status
	}
	cleanTwins, cleanStatus := run(emulator.Faults{})
	faultTwins, faultStatus := run(emulator.Faults{Throttle: 0.10, ServerError: 0.05, Unavailable: 0.05})
	if cleanStatus != engine.StatusRolledBack || faultStatus != cleanStatus {
		t.Fatalf("status clean %s, with faults %s; want rolledBack twice", cleanStatus, faultStatus)
	}
	if !reflect.DeepEqual(cleanTwins, faultTwins) {
		t.Errorf("twins differ:\nclean  %v\nfaults %v", cleanTwins, faultTwins)
	}
}

func TestNoWaitReturnsWhileRollbackJobsRun(t *testing.T) {
	// Half the devices fail the install, so the gate fails; slow devices keep both the install job and
	// the compensating job running after a poll, and --no-wait runs must return instead of waiting.
	fleet := `
groups:
  - {name: gw, count: 4, idPrefix: gw-, behavior: {methodLatency: 300ms, methodFailure: 50%}}
`
	srv, c := enginetest.Hub(t, fleet, emulator.Options{})
	p := enginetest.Plan(t, `
version: 1
name: slow-undo
action:
  directMethod: {name: install, payload: {}}
defaults:
  success: {minSuccessRate: 100%, minDevices: 1}
waves:
  - {name: all, target: "*"}
onFailure: rollback
rollback:
  directMethod: {name: revert, payload: {}}
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	res := r.apply(t, p)
	sawRollingBack := false
	for i := 0; i < 200 && res.Status != engine.StatusRolledBack; i++ {
		if res.Status == engine.StatusRollingBack {
			sawRollingBack = true
		}
		time.Sleep(50 * time.Millisecond)
		res = r.apply(t, p)
	}
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("never rolled back: %+v", res)
	}
	if !sawRollingBack {
		t.Error("no run returned while the rollback's jobs ran: --no-wait waited for them")
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations != 2 {
			t.Errorf("%s invoked %d times over the runs, want the install and the revert once each", id, d.MethodInvocations)
		}
	}
}

// TestRollbackLeavesLaterChangesAlone: after the rollout, someone sets one device's firmware to
// another version. A rollback restores every other device and leaves that one alone, reporting it as a
// conflict; with Force it restores that one too.
func TestRollbackLeavesLaterChangesAlone(t *testing.T) {
	const fleet = `
groups:
  - {name: a, count: 3, idPrefix: a-, tags: {ring: a, model: x}, desired: {firmware: {version: "1.0"}}}
`
	const planYAML = `
version: 1
name: conflicts
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
defaults:
  success: {minSuccessRate: 100%, minDevices: 1}
waves:
  - {name: all, target: "*"}
`
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("force=%v", force), func(t *testing.T) {
			srv, c := enginetest.Hub(t, fleet, emulator.Options{})
			p := enginetest.Plan(t, planYAML)
			r := newRun(t, c, srv.Quotas(), p.Name)
			if res := r.apply(t, p); res.Status != engine.StatusDone {
				t.Fatalf("apply: %s %s", res.Status, res.Reason)
			}
			patch := &hubapi.Twin{Properties: &hubapi.TwinProperties{Desired: map[string]any{"firmware": map[string]any{"version": "3.0"}}}}
			if _, err := c.UpdateTwin(context.Background(), "a-0001", patch, "*"); err != nil {
				t.Fatal(err)
			}
			opts := r.opts
			opts.Force = force
			res, err := engine.Rollback(context.Background(), opts)
			if err != nil || res.Status != engine.StatusRolledBack {
				t.Fatalf("rollback: %+v, %v", res, err)
			}
			version := func(id string) string {
				tw, err := c.GetTwin(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprint(tw.Properties.Desired["firmware"].(map[string]any)["version"])
			}
			st := r.state(t)
			want, conflicts := "3.0", 1
			if force {
				want, conflicts = "1.0", 0
			}
			if got := version("a-0001"); got != want {
				t.Errorf("a-0001 has firmware %s after the rollback, want %s", got, want)
			}
			for _, id := range []string{"a-0000", "a-0002"} {
				if got := version(id); got != "1.0" {
					t.Errorf("%s has firmware %s after the rollback, want its prior 1.0", id, got)
				}
			}
			if st.Rollback.Conflicts != conflicts || st.Rollback.Devices != 3-conflicts {
				t.Errorf("rollback progress %+v, want %d restored and %d conflicts", st.Rollback, 3-conflicts, conflicts)
			}
			rep, err := engine.BuildReport(r.store, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range rep.Devices {
				if row.Conflict != (row.Device == "a-0001" && !force) {
					t.Errorf("report row %+v: conflict %v", row, row.Conflict)
				}
			}
		})
	}
}

// TestBudgetTripsAcrossWaves: each wave passes its own gate (one failure allowed per wave), but the
// rollout's budget allows one failure in all: the second wave's failure trips it, and the plan halts.
func TestBudgetTripsAcrossWaves(t *testing.T) {
	srv, c := enginetest.Hub(t, `
groups:
  - {name: a, count: 4, idPrefix: a-, tags: {ring: a}}
  - {name: b, count: 4, idPrefix: b-, tags: {ring: b}}
devices:
  - {deviceId: a-bad, tags: {ring: a}, behavior: {methodFailure: 100%}}
  - {deviceId: b-bad, tags: {ring: b}, behavior: {methodFailure: 100%}}
`, emulator.Options{})
	p := enginetest.Plan(t, `
version: 1
name: budgeted
action:
  directMethod: {name: update}
rollback:
  directMethod: {name: revert}
onFailure: halt
defaults:
  success: {minSuccessRate: 50%, maxFailures: 1, minDevices: 1}
budget: {maxFailures: 1}
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "tags.ring = 'b'"}
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	res := r.apply(t, p)
	if res.Status != engine.StatusHalted || !strings.Contains(res.Reason, "wave b: after batch 1: budget: 2 devices failed or timed out over the rollout, more than maxFailures 1") {
		t.Fatalf("apply ended %s: %s; want halted by the budget in wave b", res.Status, res.Reason)
	}
	if st := r.state(t); st.Waves[0].Status != engine.StatusDone {
		t.Errorf("wave a is %s; its own gate passed", st.Waves[0].Status)
	}
}
