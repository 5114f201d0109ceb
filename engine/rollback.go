package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// rollback undoes every batch that may have changed devices, newest first, recording after each batch
// that it is undone, so an interrupted rollback continues with the next batch.
func (r *runner) rollback(ctx context.Context) (*Result, error) {
	st := r.st
	if st.Status == StatusRolledBack {
		return r.result(Step{Kind: StepRolledBack}), nil
	}
	if err := r.commit(st.StartRollback(r.now())); err != nil {
		return nil, err
	}
	for wi := len(st.Waves) - 1; wi >= 0; wi-- {
		w := &st.Waves[wi]
		for bi := len(w.Batches) - 1; bi >= 0; bi-- {
			b := &w.Batches[bi]
			if b.RolledBack {
				continue
			}
			if r.stopping() {
				r.emit(Event{Type: EventStopped, Wave: -1})
				res := r.result(Step{Kind: StepRollback})
				res.Stopped = true
				return res, ErrStopped
			}
			if err := r.rollbackBatch(ctx, wi, bi); err != nil {
				if errors.Is(err, errJobsOpen) {
					// --no-wait: the hub is still working on this batch's jobs; the rollback
					// progresses without us and the next run continues it.
					return r.result(Step{Kind: StepRollback}), nil
				}
				return nil, err
			}
		}
	}
	if err := r.commit(st.FinishRollback()); err != nil {
		return nil, err
	}
	return r.result(Step{Kind: StepRolledBack}), nil
}

func (r *runner) rollbackBatch(ctx context.Context, wi, bi int) error {
	b := &r.st.Waves[wi].Batches[bi]
	// Settle the forward jobs: find out which exist, wait for running ones (a running job cannot be
	// cancelled), and collect their outcomes.
	var forward []*Job
	for i := range b.Jobs {
		j := &b.Jobs[i]
		if !j.Intent {
			continue
		}
		if !j.Created {
			_, err := r.Hub.GetJob(ctx, j.ID)
			if hubapi.IsNotFound(err) {
				j.Intent = false // never created: nothing changed
				continue
			}
			if err != nil {
				return fmt.Errorf("job %s: %w", j.ID, err)
			}
			j.Created = true
		}
		forward = append(forward, j)
	}
	if err := r.awaitJobs(ctx, forward, r.collector(wi, bi)); err != nil {
		return err
	}
	if err := r.settleRetry(ctx, wi, bi); err != nil {
		return err
	}
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	var u Undone
	if r.st.waveKind(wi) == KindDirectMethod {
		u.Restored, u.Failed, err = r.compensate(ctx, wi, bi, ids, forward)
	} else {
		u, err = r.restoreTwins(ctx, wi, ids, forward)
	}
	if err != nil {
		return err
	}
	if len(u.Conflicts) > 0 {
		if err := r.Store.Update(func(tx *Tx) error { return tx.PutConflicts(wi, bi, u.Conflicts) }); err != nil {
			return err
		}
	}
	return r.commit(r.st.RollBackBatch(wi, bi, u))
}

// restoreTwins puts back the captured prior values of every device the forward jobs targeted, with
// parallel twin patches. A patch to exact prior values is idempotent, so a resumed rollback simply
// repeats the batch. A device without a snapshot was never changed (snapshots precede jobs) or no
// longer exists. A rollback never overwrites a later change: unless Force is set, each twin is read
// first, a device where a path the rollout wrote holds something else now is left alone (a
// conflict), and the restore is conditional on the twin's etag, so a change between the read and the
// write is caught too.
func (r *runner) restoreTwins(ctx context.Context, wi int, ids []string, forward []*Job) (Undone, error) {
	type item struct {
		id string
		p  Prior
	}
	var items []item
	err := r.Store.View(func(tx *Tx) error {
		for _, j := range forward {
			for _, id := range ids[j.Start:j.End] {
				p, ok, err := tx.Snapshot(id)
				if err != nil {
					return err
				}
				if ok {
					items = append(items, item{id, p})
				}
			}
		}
		return nil
	})
	if err != nil {
		return Undone{}, err
	}
	if err := r.Store.fence(ctx); err != nil {
		return Undone{}, err
	}
	var (
		mu sync.Mutex
		u  Undone
	)
	err = forEach(ctx, items, r.Workers, func(ctx context.Context, it item) error {
		outcome, err := r.restoreTwin(ctx, it.id, it.p, r.st.Waves[wi].Patch)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			return fmt.Errorf("restore twin %s: %w", it.id, err)
		case outcome == restored:
			u.Restored++
		case outcome == conflict:
			u.Conflicts = append(u.Conflicts, it.id)
		default:
			u.Failed++
		}
		return nil
	})
	sort.Strings(u.Conflicts)
	return u, err
}

// What restoring one twin did.
const (
	restored = iota
	conflict // someone changed a path the rollout wrote: left alone
	gone     // the device no longer exists
)

// restoreTwin restores one device's prior values p, unless (without Force, and when the wave's patch
// is known) the twin no longer holds what patch wrote at those paths.
func (r *runner) restoreTwin(ctx context.Context, id string, p Prior, patch *plan.TwinUpdate) (int, error) {
	if r.Force || patch == nil {
		_, err := r.Hub.UpdateTwin(ctx, id, restorePatch(p), "*")
		if hubapi.IsNotFound(err) {
			return gone, nil
		}
		return restored, err
	}
	for attempt := 0; ; attempt++ {
		tw, err := r.Hub.GetTwin(ctx, id)
		if hubapi.IsNotFound(err) {
			return gone, nil
		}
		if err != nil {
			return 0, err
		}
		var desired map[string]any
		if tw.Properties != nil {
			desired = tw.Properties.Desired
		}
		if len(ChangedSince(p, patch, tw.Tags, desired)) > 0 {
			return conflict, nil
		}
		_, err = r.Hub.UpdateTwin(ctx, id, restorePatch(p), tw.ETag)
		switch {
		case err == nil:
			return restored, nil
		case hubapi.IsNotFound(err):
			return gone, nil
		case hubapi.IsPreconditionFailed(err) && attempt < 2:
			continue // changed between the read and the write: look again
		case hubapi.IsPreconditionFailed(err):
			return conflict, nil
		}
		return 0, err
	}
}

// compensate calls the rollback direct method, as jobs with deterministic ids, on the devices of the
// batch that the forward method reached (it answered, or failed after being delivered). Jobs make the
// call exactly once per device even across crashes: a resumed run re-attaches them by id.
func (r *runner) compensate(ctx context.Context, wi, bi int, ids []string, forward []*Job) (done, failed int, err error) {
	b := &r.st.Waves[wi].Batches[bi]
	m := r.st.RollbackMethod
	if m == nil {
		return 0, 0, errors.New("the rollout's plan names no rollback.directMethod")
	}
	if len(b.RollbackJobs) == 0 {
		var reached []string
		err := r.Store.View(func(tx *Tx) error {
			for _, j := range forward {
				for _, id := range ids[j.Start:j.End] {
					o, ok, err := tx.Outcome(id)
					if err != nil {
						return err
					}
					if ok && mayHaveRun(o) {
						reached = append(reached, id)
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
		if len(reached) == 0 {
			return 0, 0, nil
		}
		// The reached devices are stored with the jobs so that a resumed run builds the same conditions.
		if err := r.Store.Update(func(tx *Tx) error { return tx.PutRollbackDevices(wi, bi, reached) }); err != nil {
			return 0, 0, err
		}
		for part, rg := range SplitIn(reached, maxQuery(r.Quotas)) {
			b.RollbackJobs = append(b.RollbackJobs, Job{ID: RollbackJobID(r.st.Name, r.st.PlanHash, wi, bi, part),
				Start: rg[0], End: rg[1]})
		}
		if err := r.save(); err != nil {
			return 0, 0, err
		}
	}
	var reached []string
	if err := r.Store.View(func(tx *Tx) error {
		var err error
		reached, err = tx.RollbackDevices(wi, bi)
		return err
	}); err != nil {
		return 0, 0, err
	}
	jobs := jobRefs(b.RollbackJobs)
	var create []*Job
	for _, j := range jobs {
		if !j.Created {
			create = append(create, j)
		}
	}
	_, err = r.ensureJobs(ctx, create, func(j *Job) *hubapi.JobRequest {
		start := hubapi.NewTime(time.Now().UTC())
		return &hubapi.JobRequest{JobID: j.ID, Type: hubapi.JobTypeDeviceMethod, StartTime: &start,
			QueryCondition: InCondition(reached[j.Start:j.End]), CloudToDeviceMethod: methodCall(m),
			MaxExecutionTimeInSeconds: int64(rollbackJobTimeout(m) / time.Second)}
	})
	if err != nil {
		return 0, 0, err
	}
	if err := r.awaitJobs(ctx, jobs, r.settleByStatistics); err != nil {
		return 0, 0, err
	}
	for _, j := range jobs {
		done += j.Counts.Succeeded
		failed += j.Counts.Failed + j.Counts.TimedOut
	}
	return done, failed, nil
}
