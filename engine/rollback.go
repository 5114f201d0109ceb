package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
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
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	var restored, failed int
	if r.st.waveKind(wi) == KindDirectMethod {
		restored, failed, err = r.compensate(ctx, wi, bi, ids, forward)
	} else {
		restored, failed, err = r.restoreTwins(ctx, ids, forward)
	}
	if err != nil {
		return err
	}
	return r.commit(r.st.RollBackBatch(wi, bi, restored, failed))
}

// restoreTwins puts back the captured prior values of every device the forward jobs targeted, with
// parallel twin patches. A patch to exact prior values is idempotent, so a resumed rollback simply
// repeats the batch. A device without a snapshot was never changed (snapshots precede jobs) or no
// longer exists.
func (r *runner) restoreTwins(ctx context.Context, ids []string, forward []*Job) (restored, failed int, err error) {
	type item struct {
		id string
		p  Prior
	}
	var items []item
	err = r.Store.View(func(tx *Tx) error {
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
		return 0, 0, err
	}
	var mu sync.Mutex
	err = forEach(ctx, items, r.Workers, func(ctx context.Context, it item) error {
		_, err := r.Hub.UpdateTwin(ctx, it.id, restorePatch(it.p), "*")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			restored++
		case hubapi.IsNotFound(err):
			failed++
		default:
			return fmt.Errorf("restore twin %s: %w", it.id, err)
		}
		return nil
	})
	return restored, failed, err
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
