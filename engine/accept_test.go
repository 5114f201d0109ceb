package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
)

// TestAcceptContinuesAfterABudgetHalt: the budget trips in wave b; the failures are accepted, and the
// next apply continues with wave c, whose budget counts from the acceptance: c's one failure is
// within maxFailures 1, where the rollout's three would not be. No device gets the method twice.
func TestAcceptContinuesAfterABudgetHalt(t *testing.T) {
	srv, c := enginetest.Hub(t, `
groups:
  - {name: a, count: 4, idPrefix: a-, tags: {ring: a}}
  - {name: b, count: 4, idPrefix: b-, tags: {ring: b}}
  - {name: c, count: 4, idPrefix: c-, tags: {ring: c}}
devices:
  - {deviceId: a-bad, tags: {ring: a}, behavior: {methodFailure: 100%}}
  - {deviceId: b-bad, tags: {ring: b}, behavior: {methodFailure: 100%}}
  - {deviceId: c-bad, tags: {ring: c}, behavior: {methodFailure: 100%}}
`, emulator.Options{})
	p := enginetest.Plan(t, `
version: 1
name: accepted
action:
  directMethod: {name: update}
onFailure: halt
defaults:
  success: {minSuccessRate: 50%, maxFailures: 1, minDevices: 1}
budget: {maxFailures: 1}
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "tags.ring = 'b'"}
  - {name: c, target: "tags.ring = 'c'"}
`)
	r := newRun(t, c, srv.Quotas(), p.Name)
	if res := r.apply(t, p); res.Status != engine.StatusHalted || !strings.Contains(res.Reason, "wave b: after batch 1: budget") {
		t.Fatalf("apply ended %s: %s; want halted by the budget in wave b", res.Status, res.Reason)
	}
	var refused *engine.RefusedError
	if _, err := engine.Accept(r.store, engine.Acceptance{By: "ana"}); !errors.As(err, &refused) {
		t.Errorf("an acceptance without a reason: %v, want refused", err)
	}
	a, err := engine.Accept(r.store, engine.Acceptance{By: "ana", At: time.Now(), Reason: "bench units"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Failures != 2 || a.Wave != "b" || !strings.Contains(a.Halt, "budget") {
		t.Errorf("acceptance %+v, want 2 failures of wave b's budget halt", a)
	}
	if _, err := engine.Accept(r.store, engine.Acceptance{By: "bo", Reason: "again"}); !errors.As(err, &refused) {
		t.Errorf("a second acceptance of the same halt: %v, want refused", err)
	}
	res := r.apply(t, p)
	if res.Status != engine.StatusDone {
		t.Fatalf("after the acceptance: %s (%s), want done", res.Status, res.Reason)
	}
	st := r.state(t)
	if len(st.Accepted) != 1 || st.Accepted[0].By != "ana" || st.Accepted[0].Reason != "bench units" {
		t.Errorf("accepted %+v, want ana's", st.Accepted)
	}
	if w := st.Waves[2]; w.Status != engine.StatusDone || w.Counts.Failed != 1 {
		t.Errorf("wave c %s %+v, want done with its one failure", w.Status, w.Counts)
	}
	if r.rec.count(engine.EventAccepted) != 1 {
		t.Errorf("%d accepted events, want 1", r.rec.count(engine.EventAccepted))
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations != 1 {
			t.Errorf("%s invoked %d times, want once", id, d.MethodInvocations)
		}
	}
	if _, err := engine.Accept(r.store, engine.Acceptance{By: "ana", Reason: "x"}); !errors.As(err, &refused) {
		t.Errorf("accepting a done rollout: %v, want refused", err)
	}
}
