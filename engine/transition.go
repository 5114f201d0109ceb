package engine

import (
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// This file holds every change of a rollout's, wave's or batch's status: the state machine's
// transitions as named methods on State. Each changes the state in memory and returns the events it
// causes (the runner stamps their time); it does no I/O. The runner's part is "transition, save,
// emit", and the intent-first order of job creation around it (see ensureJobs).

// NewState is the record of a new rollout of plan p on the hub named hub, created at created: running,
// every wave pending.
func NewState(p *plan.Plan, hub string, created time.Time) *State {
	st := &State{Name: p.Name, PlanHash: p.Hash, PlanParts: plan.Parts(p), PlanFile: p.File, Hub: hub, Hubs: HubRefs(p),
		Kind: kindOf(p.Waves[0]), Status: StatusRunning, Created: created.UTC()}
	if m := p.Rollback.DirectMethod; m != nil {
		st.RollbackMethod = m
	}
	for _, w := range p.Waves {
		st.Waves = append(st.Waves, Wave{Name: w.Name, Kind: kindOf(w), Status: StatusPending, Gated: w.Approval,
			Patch: w.Action.TwinUpdate})
	}
	return st
}

// ResolveWave records wave wi's resolved devices: their count and the batches they split into.
func (st *State) ResolveWave(wi, devices int, ranges [][2]int) {
	w := &st.Waves[wi]
	w.Resolved, w.DeviceCount, w.Counts = true, devices, Counts{}
	w.Batches = nil
	for _, rg := range ranges {
		w.Batches = append(w.Batches, Batch{Start: rg[0], End: rg[1], Status: StatusPending})
	}
}

// StartWave marks wave wi, resolved, running from now.
func (st *State) StartWave(wi int, now time.Time) []Event {
	w := &st.Waves[wi]
	w.Status, w.Started = StatusRunning, now.UTC()
	st.Waiting = nil
	return []Event{{Type: EventWaveStarted, Wave: wi, Devices: w.DeviceCount, Batches: len(w.Batches)}}
}

// StartBatch marks batch bi of wave wi running, with the jobs that carry it planned.
func (st *State) StartBatch(wi, bi int, jobs []Job) {
	b := &st.Waves[wi].Batches[bi]
	if len(b.Jobs) == 0 {
		b.Jobs = jobs
	}
	b.Status = StatusRunning
}

// SettleBatch sums the outcomes of batch bi's collected jobs into the batch and its wave, once every
// job of the batch ended.
func (st *State) SettleBatch(wi, bi int) []Event {
	w := &st.Waves[wi]
	b := &w.Batches[bi]
	b.Counts = Counts{}
	for _, j := range b.Jobs {
		b.Counts = b.Counts.Add(j.Counts)
	}
	w.Counts = Counts{}
	for i := 0; i <= bi; i++ {
		w.Counts = w.Counts.Add(w.Batches[i].Counts)
	}
	return []Event{{Type: EventBatchDone, Wave: wi, Batch: bi, Batches: len(w.Batches), Devices: b.End - b.Start,
		Done: b.End - b.Start, Counts: &b.Counts}}
}

// RetryBatch marks batch bi of wave wi, its jobs ended at now, retrying: its devices that the
// wave's retry names are tried again before the batch's gate.
func (st *State) RetryBatch(wi, bi int, now time.Time) []Event {
	b := &st.Waves[wi].Batches[bi]
	b.Status, b.Tried = StatusRetrying, now.UTC()
	return nil
}

// StartRetry records retry attempt rec of batch bi of wave wi, started at now; an attempt without a
// device (none of the batch's devices to retry was connected) ends at once.
func (st *State) StartRetry(wi, bi int, rec Retry, now time.Time) []Event {
	b := &st.Waves[wi].Batches[bi]
	rec.Ended = len(rec.Jobs) == 0
	b.Retries = append(b.Retries, rec)
	events := []Event{{Type: EventRetry, Wave: wi, Batch: bi, Batches: len(st.Waves[wi].Batches), Attempt: rec.Attempt,
		Devices: rec.Devices, Waited: rec.Waited}}
	if rec.Ended {
		b.Tried = now.UTC()
	}
	return events
}

// EndRetry records that the running retry attempt of batch bi of wave wi ended at now, its outcomes
// in the batch's counts: the wave's counts are summed again, each device by its last attempt.
func (st *State) EndRetry(wi, bi int, now time.Time) []Event {
	w := &st.Waves[wi]
	b := &w.Batches[bi]
	rec := &b.Retries[len(b.Retries)-1]
	rec.Counts = Counts{}
	for _, j := range rec.Jobs {
		rec.Counts = rec.Counts.Add(j.Counts)
	}
	rec.Ended, b.Tried = true, now.UTC()
	w.Counts = Counts{}
	for i := 0; i <= bi; i++ {
		w.Counts = w.Counts.Add(w.Batches[i].Counts)
	}
	return []Event{{Type: EventRetryDone, Wave: wi, Batch: bi, Batches: len(w.Batches), Attempt: rec.Attempt,
		Devices: rec.Devices, Counts: &b.Counts}}
}

// PassBatch marks batch bi of wave wi done after its gate passed (v says why, when it was not judged).
func (st *State) PassBatch(wi, bi int, v Verdict) []Event {
	w := &st.Waves[wi]
	w.Batches[bi].Status = StatusDone
	return []Event{{Type: EventGatePassed, Wave: wi, Batch: bi, Counts: &w.Counts, Reason: v.Reason}}
}

// FailWave records that a gate of wave wi failed for reason: the rollout halts, or (halt false) rolls
// back next.
func (st *State) FailWave(wi int, reason string, halt bool) []Event {
	w := &st.Waves[wi]
	w.Status = StatusFailed
	st.Reason = fmt.Sprintf("wave %s: %s", w.Name, reason)
	events := []Event{{Type: EventGateFailed, Wave: wi, Reason: reason, Counts: &w.Counts}}
	if halt {
		st.Status = StatusHalted
		return append(events, Event{Type: EventHalted, Wave: wi, Reason: st.Reason})
	}
	st.Status = StatusRollingBack
	return events
}

// PassWave records that wave wi's end gate passed at now: it bakes (and verifies) next, or, with no
// device, is done at once.
func (st *State) PassWave(wi int, v Verdict, now time.Time) []Event {
	w := &st.Waves[wi]
	events := []Event{{Type: EventGatePassed, Wave: wi, Batch: -1, Counts: &w.Counts, Reason: v.Reason}}
	w.Status, w.BakeStart = StatusBaking, now.UTC()
	if w.DeviceCount == 0 {
		w.Status, w.Done = StatusDone, w.BakeStart
		events = append(events, Event{Type: EventWaveDone, Wave: wi})
	}
	return events
}

// PassVerify records that wave wi's verify reached its rate.
func (st *State) PassVerify(wi int) { st.Waves[wi].VerifyOK = true }

// FinishWave marks wave wi done at now, its bake and verify behind it.
func (st *State) FinishWave(wi int, now time.Time) []Event {
	w := &st.Waves[wi]
	w.Status, w.Done = StatusDone, now.UTC()
	st.Waiting = nil
	return []Event{{Type: EventWaveDone, Wave: wi, Devices: w.DeviceCount, Counts: &w.Counts}}
}

// Finish marks the rollout done: every wave is.
func (st *State) Finish() []Event {
	st.Status = StatusDone
	return []Event{{Type: EventDone, Wave: -1}}
}

// RequestRollback asks for the rollout to be rolled back (rollout rollback), for reason unless it
// has one.
func (st *State) RequestRollback(reason string) {
	st.Requested = true
	if st.Reason == "" {
		st.Reason = reason
	}
}

// StartRollback marks the rollout rolling back from now (a resumed rollback keeps its progress).
func (st *State) StartRollback(now time.Time) []Event {
	if st.Rollback == nil {
		st.Rollback = &Progress{Started: now.UTC()}
	}
	st.Status = StatusRollingBack
	return []Event{{Type: EventRollbackStarted, Wave: -1, Reason: st.Reason}}
}

// RollBackBatch records that batch bi of wave wi is undone: restored devices put back (or
// compensated), failed ones not, conflicts left alone because someone changed them since.
func (st *State) RollBackBatch(wi, bi int, u Undone) []Event {
	st.Waves[wi].Batches[bi].RolledBack = true
	st.Rollback.Devices += u.Restored
	st.Rollback.Failed += u.Failed
	st.Rollback.Conflicts += len(u.Conflicts)
	return []Event{{Type: EventRollbackBatch, Wave: wi, Batch: bi, Devices: u.Restored,
		Counts: &Counts{Succeeded: u.Restored, Failed: u.Failed}, Conflicts: len(u.Conflicts)}}
}

// Undone is what rolling a batch back did: devices restored (or compensated), failed, and left alone
// because someone changed what the rollout wrote (by id).
type Undone struct {
	Restored, Failed int
	Conflicts        []string
}

// FinishRollback marks the rollout rolled back: every batch is undone.
func (st *State) FinishRollback() []Event {
	st.Status = StatusRolledBack
	st.Rollback.Done = true
	return []Event{{Type: EventRolledBack, Wave: -1, Devices: st.Rollback.Devices,
		Counts: &Counts{Succeeded: st.Rollback.Devices, Failed: st.Rollback.Failed}, Reason: st.Reason,
		Conflicts: st.Rollback.Conflicts}}
}

// Accept applies acceptance a of the rollout's halt at now: the failed wave continues past the gate
// that failed (see the function Accept), and the rollout runs again.
func (st *State) Accept(a Acceptance, now time.Time) []Event {
	events := []Event{{Type: EventAccepted, Wave: -1, By: a.By, At: a.At, Reason: a.Reason, Counts: &Counts{Failed: a.Failures}}}
	if wi := st.failedWave(); wi >= 0 {
		w := &st.Waves[wi]
		events[0].Wave = wi
		w.Accepted = w.Counts
		open := -1
		for bi, b := range w.Batches {
			if b.Status != StatusDone {
				open = bi
				break
			}
		}
		switch {
		case open >= 0: // a batch's gate or the budget: that batch is done, the next runs
			w.Batches[open].Status, w.Status = StatusDone, StatusRunning
		case w.BakeStart.IsZero(): // the wave's end gate: its bake and verify come next
			w.Status, w.BakeStart = StatusBaking, now.UTC()
			if w.DeviceCount == 0 {
				w.Status, w.Done = StatusDone, w.BakeStart
			}
		default: // verify: the bake ends as planned
			w.Status, w.VerifyOK = StatusBaking, true
		}
	}
	a.Totals = st.Totals()
	st.Accepted = append(st.Accepted, a)
	st.Status, st.Reason = StatusRunning, ""
	return events
}
