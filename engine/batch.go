package engine

import (
	"context"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// runBatch runs the batch of step until its jobs ended and its outcomes are judged, preparing what
// comes next (step.Ahead) while they run. It returns waiting=true, with nothing left to do right now,
// when NoWait is set and jobs are still running, and returns early (nil error) when Stop is closed;
// the jobs then keep running on the hub and the next run re-attaches them.
func (r *runner) runBatch(ctx context.Context, step Step) (waiting bool, err error) {
	wi, bi := step.Wave, step.Batch
	if err := r.prepareBatch(ctx, wi, bi); err != nil {
		return false, err
	}
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	b := &w.Batches[bi]
	jobs := jobRefs(b.Jobs)
	// A preparation an earlier batch started may still run: it goes on while this batch's jobs do.
	next, task := step.Ahead, r.ahead
	r.ahead = nil
	defer func() { task.abandon() }()
	var rate rateMeter
	for {
		// While the hub works, prepare what comes next, so the next job starts right after the gate:
		// from the batch's start, since creating its jobs takes a while on a fast hub.
		if task == nil && next != nil {
			task, next = r.startAhead(ctx, next), nil
		}
		if err := r.startJobs(ctx, wi, bi, jobs, &pw); err != nil {
			return false, err
		}
		p, err := r.pollJobs(ctx, jobs, r.collector(wi, bi))
		if err != nil {
			return false, err
		}
		if p.ended {
			break
		}
		r.emit(Event{Type: EventBatchProgress, Wave: wi, Batch: bi, Batches: len(w.Batches), Devices: b.End - b.Start,
			Done: p.counts.Done(), Counts: &p.counts})
		observed := rate.observe(r.now(), p.counts.Done())
		if r.NoWait || r.stopping() {
			return r.NoWait, r.save()
		}
		if task != nil && task.finished() {
			if err := r.applyAhead(task); err != nil {
				return false, err
			}
			task, next = nil, PrepareAhead(r.p, r.st, wi, bi, r.now())
			continue
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.Stop:
		case <-r.Clock.After(r.pollInterval(p.pending, p.open, observed)):
		case <-task.doneChan():
		}
	}
	if task != nil && task.finished() {
		if err := r.applyAhead(task); err != nil {
			return false, err
		}
		task = nil
	}
	// A preparation still running (the next wave's devices, say, whose queries the tier spaces out)
	// goes on while this batch is judged and the next one starts: the hub's job slot does not wait
	// for it. The step that needs its result waits for it (awaitAhead).
	r.ahead, task = task, nil
	r.emitAll(r.st.SettleBatch(wi, bi))
	now := r.now()
	settled := *b
	settled.Tried = now
	if _, ok := NextRetry(pw.Retry, w.Started, &settled, now); ok {
		return false, r.commit(r.st.RetryBatch(wi, bi, now))
	}
	return false, r.judgeBatch(wi, bi)
}

// prepareBatch plans the jobs of a pending batch (each job's condition within the hub's query
// length) and, for a twin update, captures the batch's prior values before any job may change them.
func (r *runner) prepareBatch(ctx context.Context, wi, bi int) error {
	b := &r.st.Waves[wi].Batches[bi]
	if b.Status == StatusPending {
		ids, err := r.waveDevices(wi)
		if err != nil {
			return err
		}
		var jobs []Job
		for part, rg := range SplitIn(ids[b.Start:b.End], maxQuery(r.Quotas)) {
			jobs = append(jobs, Job{ID: plan.JobID(r.p, wi, bi, part),
				Start: b.Start + rg[0], End: b.Start + rg[1], Counts: Counts{Targeted: rg[1] - rg[0]}})
		}
		r.st.StartBatch(wi, bi, jobs)
		if err := r.save(); err != nil {
			return err
		}
	}
	if err := r.awaitAhead(wi, bi); err != nil {
		return err
	}
	if r.p.Waves[wi].Action.TwinUpdate != nil && !b.Snapshotted {
		return r.snapshot(ctx, wi, bi)
	}
	return nil
}

// rateMeter measures the rate at which the hub processes a batch's devices, to time the polls.
type rateMeter struct {
	since time.Time
	done  int
}

// observe records that done devices were done at now and returns the devices a second since the
// first observation (0 until half a second has passed).
func (m *rateMeter) observe(now time.Time, done int) float64 {
	if m.since.IsZero() {
		m.since, m.done = now, done
		return 0
	}
	if dt := now.Sub(m.since).Seconds(); dt >= 0.5 {
		return float64(done-m.done) / dt
	}
	return 0
}
