package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// runBatch runs batch bi of wave wi until its jobs ended and its outcomes are judged. It returns
// waiting=true, with nothing left to do right now, when NoWait is set and jobs are still running, and
// returns early (nil error) when Stop is closed; the jobs then keep running on the hub and the next run
// re-attaches them.
func (r *runner) runBatch(ctx context.Context, wi, bi int) (waiting bool, err error) {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	b := &w.Batches[bi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return false, err
	}
	if b.Status == StatusPending {
		var jobs []Job
		for part, rg := range SplitIn(ids[b.Start:b.End], maxQuery(r.Quotas)) {
			jobs = append(jobs, Job{ID: plan.JobID(r.p, wi, bi, part),
				Start: b.Start + rg[0], End: b.Start + rg[1], Counts: Counts{Targeted: rg[1] - rg[0]}})
		}
		r.st.StartBatch(wi, bi, jobs)
		if err := r.save(); err != nil {
			return false, err
		}
	}
	if pw.Action.TwinUpdate != nil && !b.Snapshotted {
		if err := r.snapshot(ctx, wi, bi); err != nil {
			return false, err
		}
	}
	var task *ahead
	defer func() { task.abandon() }()
	// The rate the hub actually processes this batch's devices at, to time the polls.
	var since time.Time
	sinceDone := 0
	for {
		running := 0
		for i := range b.Jobs {
			if j := &b.Jobs[i]; j.Created && !j.Collected {
				running++
			}
		}
		for i := range b.Jobs {
			j := &b.Jobs[i]
			if j.Created || running >= r.concurrentJobs() {
				continue
			}
			if err := r.startJob(ctx, wi, bi, j, &pw); err != nil {
				return false, err
			}
			if j.Created {
				running++
			}
		}
		pending := 0
		progress := Counts{}
		for i := range b.Jobs {
			j := &b.Jobs[i]
			if !j.Created || j.Collected {
				progress = progress.Add(j.Counts)
				continue
			}
			resp, err := r.Hub.GetJob(ctx, j.ID)
			if err != nil {
				return false, fmt.Errorf("job %s: %w", j.ID, err)
			}
			j.Status = resp.Status
			if resp.Terminal() {
				if err := r.collect(ctx, wi, bi, j, resp); err != nil {
					return false, err
				}
				progress = progress.Add(j.Counts)
				continue
			}
			if s := resp.DeviceJobStatistics; s != nil {
				progress.Succeeded += int(s.SucceededCount)
				progress.Failed += int(s.FailedCount)
				pending += int(s.PendingCount + s.RunningCount)
				if rest := j.End - j.Start - int(s.DeviceCount); rest > 0 {
					pending += rest
				}
			} else {
				pending += j.End - j.Start
			}
		}
		done := 0
		for i := range b.Jobs {
			if !b.Jobs[i].Collected {
				break
			}
			done++
		}
		if done == len(b.Jobs) {
			break
		}
		doneNow := progress.Succeeded + progress.Failed + progress.TimedOut + progress.Unreachable
		r.emit(Event{Type: EventBatchProgress, Wave: wi, Batch: bi, Batches: len(w.Batches), Devices: b.End - b.Start,
			Done: doneNow, Counts: &progress})
		observed := 0.0
		if since.IsZero() {
			since, sinceDone = r.now(), doneNow
		} else if dt := r.now().Sub(since).Seconds(); dt >= 0.5 {
			observed = float64(doneNow-sinceDone) / dt
		}
		if r.NoWait {
			return true, r.save()
		}
		if r.stopping() {
			return false, r.save()
		}
		// While the hub works, prepare what comes next, so the next job starts right after the gate.
		if task == nil {
			task = r.startAhead(ctx, wi, bi)
		} else if task.finished() {
			if err := r.applyAhead(task); err != nil {
				return false, err
			}
			task = nil
			continue
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.Stop:
		case <-r.Clock.After(r.pollInterval(pending, running, observed)):
		case <-task.doneChan():
		}
	}
	if task != nil {
		<-task.done
		if err := r.applyAhead(task); err != nil {
			return false, err
		}
		task = nil
	}
	r.emitAll(r.st.SettleBatch(wi, bi))
	v := Judge(w.Counts, pw.Success)
	if !v.Pass {
		return false, r.failWave(wi, fmt.Sprintf("after batch %d: %s", bi+1, v.Reason))
	}
	return false, r.commit(r.st.PassBatch(wi, bi, v))
}
