package engine

import (
	"reflect"
	"testing"
	"time"
)

// TestTransitions runs each named transition on a small state and checks the statuses it leaves and
// the events it returns, like TestNext does for decisions.
func TestTransitions(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fresh := func() *State {
		return &State{Name: "fw", Status: StatusRunning, Waves: []Wave{
			{Name: "canary", Status: StatusPending},
			{Name: "rest", Status: StatusPending},
		}}
	}
	// resolved has wave 0 resolved into batches of 2 and 3 devices, running.
	resolved := func() *State {
		st := fresh()
		st.ResolveWave(0, 5, [][2]int{{0, 2}, {2, 5}})
		st.StartWave(0, t0)
		return st
	}
	type want struct {
		rollout Status
		waves   []Status
		batches []Status // of wave 0
		events  []EventType
	}
	tests := []struct {
		name string
		do   func(st *State) []Event
		want want
	}{
		{"start a wave", func(st *State) []Event { st.ResolveWave(0, 5, [][2]int{{0, 2}, {2, 5}}); return st.StartWave(0, t0) },
			want{StatusRunning, []Status{StatusRunning, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventWaveStarted}}},
		{"start a batch", func(st *State) []Event { st.StartBatch(0, 0, []Job{{ID: "j"}}); return nil },
			want{StatusRunning, []Status{StatusRunning, StatusPending}, []Status{StatusRunning, StatusPending}, nil}},
		{"settle and pass a batch", func(st *State) []Event {
			st.StartBatch(0, 0, []Job{{ID: "j", Counts: Counts{Targeted: 2, Succeeded: 2}}})
			return append(st.SettleBatch(0, 0), st.PassBatch(0, 0, Verdict{Pass: true})...)
		}, want{StatusRunning, []Status{StatusRunning, StatusPending}, []Status{StatusDone, StatusPending}, []EventType{EventBatchDone, EventGatePassed}}},
		{"fail a gate and halt", func(st *State) []Event { return st.FailWave(0, "too many failures", true) },
			want{StatusHalted, []Status{StatusFailed, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventGateFailed, EventHalted}}},
		{"fail a gate and roll back", func(st *State) []Event { return st.FailWave(0, "too many failures", false) },
			want{StatusRollingBack, []Status{StatusFailed, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventGateFailed}}},
		{"pass a wave: bake", func(st *State) []Event { return st.PassWave(0, Verdict{Pass: true}, t0) },
			want{StatusRunning, []Status{StatusBaking, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventGatePassed}}},
		{"finish a wave", func(st *State) []Event { return st.FinishWave(0, t0) },
			want{StatusRunning, []Status{StatusDone, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventWaveDone}}},
		{"finish the rollout", func(st *State) []Event { return st.Finish() },
			want{StatusDone, []Status{StatusRunning, StatusPending}, []Status{StatusPending, StatusPending}, []EventType{EventDone}}},
		{"accept a halt at a batch's gate: the next batch runs", func(st *State) []Event {
			st.FailWave(0, "after batch 1: budget", true)
			return st.Accept(Acceptance{By: "ana", Reason: "known"}, t0)
		}, want{StatusRunning, []Status{StatusRunning, StatusPending}, []Status{StatusDone, StatusPending}, []EventType{EventAccepted}}},
		{"accept a halt at a wave's end gate: it bakes", func(st *State) []Event {
			st.Waves[0].Batches[0].Status, st.Waves[0].Batches[1].Status = StatusDone, StatusDone
			st.FailWave(0, "success rate", true)
			return st.Accept(Acceptance{By: "ana", Reason: "known"}, t0)
		}, want{StatusRunning, []Status{StatusBaking, StatusPending}, []Status{StatusDone, StatusDone}, []EventType{EventAccepted}}},
		{"accept a failed verify: the bake ends as planned", func(st *State) []Event {
			st.Waves[0].Batches[0].Status, st.Waves[0].Batches[1].Status = StatusDone, StatusDone
			st.PassWave(0, Verdict{Pass: true}, t0)
			st.FailWave(0, "verify", true)
			ev := st.Accept(Acceptance{By: "ana", Reason: "known"}, t0)
			if !st.Waves[0].VerifyOK {
				ev = nil // reported as a missing event
			}
			return ev
		}, want{StatusRunning, []Status{StatusBaking, StatusPending}, []Status{StatusDone, StatusDone}, []EventType{EventAccepted}}},
		{"roll back", func(st *State) []Event {
			ev := st.StartRollback(t0)
			ev = append(ev, st.RollBackBatch(0, 1, Undone{Restored: 3})...)
			ev = append(ev, st.RollBackBatch(0, 0, Undone{Restored: 1, Failed: 1})...)
			return append(ev, st.FinishRollback()...)
		}, want{StatusRolledBack, []Status{StatusRunning, StatusPending}, []Status{StatusPending, StatusPending},
			[]EventType{EventRollbackStarted, EventRollbackBatch, EventRollbackBatch, EventRolledBack}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := resolved()
			if tt.name == "start a wave" {
				st = fresh()
			}
			events := tt.do(st)
			got := want{rollout: st.Status}
			for _, w := range st.Waves {
				got.waves = append(got.waves, w.Status)
			}
			for _, b := range st.Waves[0].Batches {
				got.batches = append(got.batches, b.Status)
			}
			for _, e := range events {
				got.events = append(got.events, e.Type)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTransitionDetails(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st := &State{Name: "fw", Status: StatusRunning, Waves: []Wave{{Name: "empty", Status: StatusPending}}}
	st.ResolveWave(0, 0, nil)
	st.StartWave(0, t0)
	if ev := st.PassWave(0, Verdict{Pass: true}, t0); st.Waves[0].Status != StatusDone || len(ev) != 2 || ev[1].Type != EventWaveDone {
		t.Errorf("a wave without devices must be done once its gate passes: %s, %+v", st.Waves[0].Status, ev)
	}
	st = &State{Name: "fw", Status: StatusRunning, Waves: []Wave{{Name: "canary", Status: StatusRunning}}}
	st.FailWave(0, "after batch 1: 2 devices failed", true)
	if st.Reason != "wave canary: after batch 1: 2 devices failed" {
		t.Errorf("reason %q", st.Reason)
	}
	st.RequestRollback("rollback requested")
	if !st.Requested || st.Reason != "wave canary: after batch 1: 2 devices failed" {
		t.Errorf("a rollback request keeps the reason it found: %v %q", st.Requested, st.Reason)
	}
	st.Waves[0].Batches = []Batch{{Start: 0, End: 4, Jobs: []Job{{Counts: Counts{Targeted: 4, Succeeded: 3, Failed: 1}}}}}
	st.SettleBatch(0, 0)
	if c := st.Waves[0].Counts; c.Targeted != 4 || c.Failed != 1 {
		t.Errorf("settled counts %+v", c)
	}
	st.StartRollback(t0)
	st.RollBackBatch(0, 0, Undone{Restored: 3, Failed: 1, Conflicts: []string{"d"}})
	ev := st.FinishRollback()
	if st.Rollback.Devices != 3 || st.Rollback.Failed != 1 || st.Rollback.Conflicts != 1 || !st.Rollback.Done || ev[0].Devices != 3 || ev[0].Conflicts != 1 {
		t.Errorf("rollback progress %+v, %+v", st.Rollback, ev)
	}
}

// TestAcceptCountsFromThere: once a halt is accepted, the wave's gates and the budget count only what
// comes after it.
func TestAcceptCountsFromThere(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st := &State{Name: "fw", Status: StatusRunning, Waves: []Wave{{Name: "a", Status: StatusPending}}}
	st.ResolveWave(0, 20, [][2]int{{0, 10}, {10, 20}})
	st.StartWave(0, t0)
	st.StartBatch(0, 0, []Job{{Counts: Counts{Targeted: 10, Succeeded: 7, Failed: 3}}})
	st.SettleBatch(0, 0)
	st.FailWave(0, "after batch 1: budget", true)
	st.Accept(Acceptance{By: "ana", Reason: "bench units", Failures: 3}, t0)
	if got := st.Waves[0].Judged(); got != (Counts{}) {
		t.Errorf("judged right after the acceptance: %+v, want nothing", got)
	}
	st.StartBatch(0, 1, []Job{{Counts: Counts{Targeted: 10, Succeeded: 9, Failed: 1}}})
	st.SettleBatch(0, 1)
	if got := st.Waves[0].Judged(); got != (Counts{Targeted: 10, Succeeded: 9, Failed: 1}) {
		t.Errorf("judged after the next batch: %+v, want that batch alone", got)
	}
	if got := st.Totals().Sub(st.acceptedTotals()); got.Failed != 1 || got.Targeted != 10 {
		t.Errorf("budget counts %+v, want the next batch alone", got)
	}
	if a := st.Accepted[0]; a.By != "ana" || a.Failures != 3 || a.Totals.Failed != 3 {
		t.Errorf("acceptance %+v", a)
	}
}
