package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// This file retries a batch's devices (a wave's plan retry). Once a batch's jobs ended, the devices
// whose outcome the retry names are tried again, attempt by attempt, before the batch's gate is
// judged: each attempt is a job over those of them connected when it starts (a direct method never
// reaches a device that is not online, so a retry spends no hub operation on one), with a
// deterministic id, created through ensureJobs. A device is counted once, by its last attempt.
// NextRetry is the decision; the rest is the I/O around it.

// NextRetry decides the next retry of batch b under rt, in a wave that started at started: the time
// it may start (at or before now: at once, or its jobs are running), or ok false when there is none:
// no retry, attempts spent, no device with an outcome rt retries, or the next attempt would start
// after the wave is rt.Within old. Attempt n waits rt.Backoff·2ⁿ⁻¹ (at most rt.Within) after the
// batch's last attempt ended.
func NextRetry(rt *plan.Retry, started time.Time, b *Batch, now time.Time) (at time.Time, ok bool) {
	if rt == nil {
		return time.Time{}, false
	}
	n := len(b.Retries)
	if n > 0 && !b.Retries[n-1].Ended {
		return now, true
	}
	if n >= rt.Attempts || !retryable(rt, b.Counts) {
		return time.Time{}, false
	}
	wait := rt.Backoff
	for i := 0; i < n && wait < rt.Within; i++ {
		wait *= 2
	}
	at = b.Tried.Add(min(wait, rt.Within))
	if at.After(started.Add(rt.Within)) {
		return time.Time{}, false
	}
	return at, true
}

// retryable reports whether counts c hold a device of an outcome rt retries.
func retryable(rt *plan.Retry, c Counts) bool {
	return rt.Retries(plan.RetryUnreachable) && c.Unreachable > 0 ||
		rt.Retries(plan.RetryTimedOut) && c.TimedOut > 0 ||
		rt.Retries(plan.RetryMethodError) && c.MethodError > 0
}

// retries reports whether rt retries a device whose outcome is o.
func retries(rt *plan.Retry, o Outcome) bool {
	switch o {
	case Unreachable:
		return rt.Retries(plan.RetryUnreachable)
	case TimedOut:
		return rt.Retries(plan.RetryTimedOut)
	case MethodError:
		return rt.Retries(plan.RetryMethodError)
	}
	return false
}

// retryStep is the step of a batch that retries: act now (start an attempt, follow its jobs, or
// judge the batch once no attempt is left), or wait until the next attempt may start.
func retryStep(pw *plan.Wave, w *Wave, wi, bi int, now time.Time) Step {
	at, ok := NextRetry(pw.Retry, w.Started, &w.Batches[bi], now)
	if ok && at.After(now) {
		return Step{Kind: StepWaitRetry, Wave: wi, Batch: bi, Until: at}
	}
	return Step{Kind: StepRetry, Wave: wi, Batch: bi}
}

// RetryJobID is the deterministic id of the job that carries part part of retry attempt of batch
// batch of wave wave: the batch's job id with "-r" and the attempt, and "p" and the part after the
// first, as in "fw-1a2b3c4d-w01-b002-r1" or "...-b002-r1p3". With a name of 40 characters, attempts
// below 10 and parts below 100 it fits IoT Hub's 64 characters.
func RetryJobID(p *plan.Plan, wave, batch, attempt, part int) string {
	id := fmt.Sprintf("%s-r%d", plan.JobID(p, wave, batch, 0), attempt)
	if part > 0 {
		id += fmt.Sprintf("p%d", part)
	}
	return id
}

func retryDevicesKey(wave, batch, attempt int) string {
	return fmt.Sprintf("retry/%06d/%06d/%02d", wave, batch, attempt)
}

// RetryDevices reads the devices a batch's retry attempt targets (nil when none).
func (t *Tx) RetryDevices(wave, batch, attempt int) ([]string, error) {
	return t.list(retryDevicesKey(wave, batch, attempt))
}

// PutRetryDevices stores the devices a batch's retry attempt targets, before its jobs.
func (t *Tx) PutRetryDevices(wave, batch, attempt int, ids []string) error {
	return t.putJSON(bucketLists, retryDevicesKey(wave, batch, attempt), ids)
}

// runRetry does what a retrying batch needs now: follow its running attempt until it ends, start
// the next attempt when it is due, or, when none is left, judge the batch. It returns waiting=true
// when NoWait is set and the attempt's jobs still run.
func (r *runner) runRetry(ctx context.Context, step Step) (waiting bool, err error) {
	wi, bi := step.Wave, step.Batch
	w := &r.st.Waves[wi]
	b := &w.Batches[bi]
	if n := len(b.Retries); n > 0 && !b.Retries[n-1].Ended {
		if waiting, err := r.awaitRetry(ctx, wi, bi, n); err != nil || waiting {
			return waiting, err
		}
		return false, r.commit(r.st.EndRetry(wi, bi, r.now()))
	}
	at, ok := NextRetry(r.p.Waves[wi].Retry, w.Started, b, r.now())
	switch {
	case !ok:
		return false, r.judgeBatch(wi, bi)
	case at.After(r.now()):
		return false, nil // not due: the loop waits for it
	}
	return false, r.startRetry(ctx, wi, bi)
}

// startRetry records the next retry attempt of batch bi of wave wi, its devices and its jobs planned,
// before any of the jobs is created, so a resumed run creates the same jobs: the batch's devices
// whose outcome the retry names and, for a direct method, that are connected now.
func (r *runner) startRetry(ctx context.Context, wi, bi int) error {
	b := &r.st.Waves[wi].Batches[bi]
	rt := r.p.Waves[wi].Retry
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	var todo []string
	err = r.Store.View(func(tx *Tx) error {
		for _, id := range ids[b.Start:b.End] {
			o, ok, err := tx.Outcome(id)
			if err != nil {
				return err
			}
			if ok && retries(rt, o.Outcome) {
				todo = append(todo, id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	retry := todo
	if r.st.waveKind(wi) == KindDirectMethod {
		if retry, err = r.connected(ctx, todo); err != nil {
			return err
		}
	}
	n := len(b.Retries) + 1
	rec := Retry{Attempt: n, Started: r.now().UTC(), Devices: len(retry), Waited: len(todo) - len(retry)}
	for part, rg := range SplitIn(retry, maxQuery(r.Quotas)) {
		rec.Jobs = append(rec.Jobs, Job{ID: RetryJobID(r.p, wi, bi, n, part), Start: rg[0], End: rg[1],
			Counts: Counts{Targeted: rg[1] - rg[0]}})
	}
	events := r.st.StartRetry(wi, bi, rec, r.now())
	r.st.Updated = r.now().UTC()
	err = r.Store.Update(func(tx *Tx) error {
		if err := tx.PutRetryDevices(wi, bi, n, retry); err != nil {
			return err
		}
		return tx.PutState(r.st)
	})
	if err != nil {
		return err
	}
	r.emitAll(events)
	return nil
}

// connected returns the devices among ids (sorted) that a twin query shows connected now.
func (r *runner) connected(ctx context.Context, ids []string) ([]string, error) {
	on := map[string]bool{}
	err := r.queryByID(ctx, "SELECT deviceId FROM devices WHERE connectionState = 'Connected' AND ", ids, 1,
		func(raw json.RawMessage) error {
			id, err := rowID(raw)
			on[id] = true
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("connected devices: %w", err)
	}
	var out []string
	for _, id := range ids {
		if on[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// awaitRetry creates and polls the jobs of attempt n of batch bi of wave wi until every one ended
// and its outcomes were recorded; with NoWait it polls once and reports waiting while any runs.
func (r *runner) awaitRetry(ctx context.Context, wi, bi, n int) (waiting bool, err error) {
	rec := &r.st.Waves[wi].Batches[bi].Retries[n-1]
	var ids []string
	if err := r.Store.View(func(tx *Tx) error {
		var err error
		ids, err = tx.RetryDevices(wi, bi, n)
		return err
	}); err != nil {
		return false, err
	}
	jobs := jobRefs(rec.Jobs)
	pw := r.p.Waves[wi]
	for {
		start := JobsToStart(jobs, r.concurrentJobs())
		existed, err := r.ensureJobs(ctx, start, func(j *Job) *hubapi.JobRequest {
			return forwardJob(j.ID, InCondition(ids[j.Start:j.End]), &pw)
		})
		if err != nil {
			return false, err
		}
		for i, j := range start {
			event := EventJobCreated
			if existed[i] {
				event = EventJobAttached
			}
			r.emit(Event{Type: event, Wave: wi, Batch: bi, Job: j.ID, Devices: j.End - j.Start, Attempt: n})
		}
		p, err := r.pollJobs(ctx, jobs, func(ctx context.Context, j *Job, resp *hubapi.JobResponse) error {
			return r.collectRetry(ctx, wi, bi, n, ids, j, resp)
		})
		if err != nil || p.ended {
			return false, err
		}
		if r.NoWait || r.stopping() {
			return r.NoWait, r.save()
		}
		if err := r.sleep(ctx, r.pollInterval(p.pending, p.open, 0)); err != nil {
			return false, err
		}
	}
}

// collectRetry records the outcomes of retry job j of attempt n (over ids, the attempt's devices):
// each device's outcome is replaced by this attempt's, and the batch's counts move with it, in the
// same transaction that marks the job collected, so a resumed run never counts a device twice.
func (r *runner) collectRetry(ctx context.Context, wi, bi, n int, ids []string, j *Job, resp *hubapi.JobResponse) error {
	ids = ids[j.Start:j.End]
	method := r.st.waveKind(wi) == KindDirectMethod
	var stats hubapi.DeviceJobStatistics
	if resp.DeviceJobStatistics != nil {
		stats = *resp.DeviceJobStatistics
	}
	where, expect := "", int(stats.DeviceCount)
	all := method || int(stats.DeviceCount) < len(ids)
	if !all {
		where, expect = "devices.jobs.status <> 'completed'", int(stats.DeviceCount-stats.SucceededCount)
	}
	var rows []hubapi.DeviceJob
	if all || expect > 0 {
		var err error
		if rows, err = r.deviceJobs(ctx, j.ID, where, expect); err != nil {
			return err
		}
	}
	c, record := jobOutcomes(ids, rows, jobRead{method: method, all: all, jobFailed: resp.Status == hubapi.JobFailed, wave: wi, batch: bi})
	b := &r.st.Waves[wi].Batches[bi]
	counts := b.Counts
	err := r.Store.View(func(tx *Tx) error {
		for _, id := range ids {
			o, ok := record[id]
			if !ok {
				o = DeviceOutcome{Outcome: Succeeded, Wave: wi, Batch: bi}
			}
			old, had, err := tx.Outcome(id)
			if err != nil {
				return err
			}
			if !had {
				old = DeviceOutcome{Outcome: Succeeded}
			}
			o.Attempt, o.Ran = n, old.Ran || method && mayHaveRun(old)
			counts = counts.Remove(old.Outcome).Tally(o.Outcome)
			record[id] = o
		}
		return nil
	})
	if err != nil {
		return err
	}
	was := *j
	j.Counts, j.Collected = c, true
	b.Counts, counts = counts, b.Counts
	r.st.Updated = r.now().UTC()
	err = r.Store.Update(func(tx *Tx) error {
		for _, id := range slices.Sorted(maps.Keys(record)) { // in key order, as collect writes
			if err := tx.PutOutcome(id, record[id]); err != nil {
				return err
			}
		}
		return tx.PutState(r.st)
	})
	if err != nil {
		*j, b.Counts = was, counts // as stored: a resumed run collects the job again
	}
	return err
}

// judgeBatch judges batch bi of wave wi once its jobs and retries ended: the wave's success gate
// over its batches so far, then the rollout's budget, each counting from an accepted halt.
func (r *runner) judgeBatch(wi, bi int) error {
	v := Judge(r.st.Waves[wi].Judged(), r.p.Waves[wi].Success)
	if !v.Pass {
		return r.failWave(wi, fmt.Sprintf("after batch %d: %s", bi+1, v.Reason))
	}
	if b := JudgeBudget(r.p.Budget, r.st.Totals().Sub(r.st.acceptedTotals())); !b.Pass {
		return r.failWave(wi, fmt.Sprintf("after batch %d: %s", bi+1, b.Reason))
	}
	return r.commit(r.st.PassBatch(wi, bi, v))
}

// settleRetry waits for the running retry attempt of batch bi of wave wi, if any, before the batch is
// rolled back (a running job cannot be cancelled), and records its outcomes: a device the retry
// reached is compensated like any other. A job whose intent was recorded but that the hub does not
// have was never created.
func (r *runner) settleRetry(ctx context.Context, wi, bi int) error {
	b := &r.st.Waves[wi].Batches[bi]
	n := len(b.Retries)
	if n == 0 || b.Retries[n-1].Ended {
		return nil
	}
	rec := &b.Retries[n-1]
	var ids []string
	if err := r.Store.View(func(tx *Tx) error {
		var err error
		ids, err = tx.RetryDevices(wi, bi, n)
		return err
	}); err != nil {
		return err
	}
	var open []*Job
	for i := range rec.Jobs {
		j := &rec.Jobs[i]
		if j.Intent && !j.Created {
			_, err := r.Hub.GetJob(ctx, j.ID)
			if err != nil && !hubapi.IsNotFound(err) {
				return fmt.Errorf("job %s: %w", j.ID, err)
			}
			j.Created = err == nil
		}
		if j.Created {
			open = append(open, j)
		}
	}
	err := r.awaitJobs(ctx, open, func(ctx context.Context, j *Job, resp *hubapi.JobResponse) error {
		return r.collectRetry(ctx, wi, bi, n, ids, j, resp)
	})
	if err != nil {
		return err
	}
	return r.commit(r.st.EndRetry(wi, bi, r.now()))
}
