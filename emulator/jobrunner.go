package emulator

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/iot-rollout/rollout/hubapi"
)

// The job runner drives each job on a goroutine of its own, from queued to an end. It decides when a
// job moves on and does the waiting and the device calls; every change of a job's state is a jobStore
// method, which takes the store's lock itself.

// createJob registers a job and starts its runner.
func (s *Server) createJob(req *hubapi.JobRequest, w *twinWrite) (*hubapi.JobResponse, error) {
	j := newJob(req, w, time.Now())
	resp, err := s.jobs.create(j, s.quotas)
	if err != nil {
		return nil, err
	}
	s.startRunner(j)
	return resp, nil
}

func (s *Server) startRunner(j *job) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runJob(j)
	}()
}

// resumeJobs restarts the runners of jobs that had not ended when the data file was written.
func (s *Server) resumeJobs() {
	for _, j := range s.jobs.unfinished() {
		s.startRunner(j)
	}
}

// runJob drives one job: queued, scheduled until its start time, running over the devices its condition
// selects at start, then completed (or failed when the condition cannot be evaluated).
func (s *Server) runJob(j *job) {
	if !s.beginJob(j) {
		return
	}
	deadline := time.Unix(0, j.began).Add(time.Duration(j.req.MaxExecutionTimeInSeconds) * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if j.req.Type == hubapi.JobTypeUpdateTwin {
		s.runTwinJob(ctx, j)
	} else {
		s.runMethodJob(ctx, j)
	}
	select {
	case <-s.done:
		return // shutting down: the job stays running and resumes after a restart with --data
	default:
	}
	s.jobs.complete(j, time.Now().UnixNano())
}

// beginJob waits for a queued or scheduled job's start time and starts it running over the devices its
// condition selects then. It reports whether the job is running: false when it was cancelled, failed,
// had already ended (a resumed job), or the emulator is closing.
func (s *Server) beginJob(j *job) bool {
	status, start := s.jobs.schedule(j, time.Now().UnixNano())
	switch status {
	case hubapi.JobRunning:
		return true // resumed from the data file
	case hubapi.JobQueued, hubapi.JobScheduled:
	default:
		return false
	}
	if d := time.Until(time.Unix(0, start)); d > 0 && sleep(d, s.done, j.cancel) != elapsed {
		return false
	}
	devs, err := s.store.jobTargets(j.req.QueryCondition)
	return s.jobs.begin(j, devs, err, time.Now().UnixNano())
}

// runTwinJob applies the job's patch to each device, paced by the tier's job device operations.
func (s *Server) runTwinJob(ctx context.Context, j *job) {
	idx := s.jobs.pendingRows(j)
	tagMemo, desMemo := newPatchMemo(j.write.tags), newPatchMemo(j.write.desired)
	lim := s.limits.buckets[QuotaJobDeviceOps]
	use := s.limits.use[QuotaJobDeviceOps]
	batch := 1
	if lim.Limit() == rate.Inf {
		batch = 2048
	}
	devs, errs := make([]*device, batch), make([]error, batch)
	for len(idx) > 0 {
		n := min(batch, len(idx))
		if lim.Limit() != rate.Inf {
			if err := lim.Wait(ctx); err != nil {
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		use.used.Add(int64(n))
		now := time.Now().UnixNano()
		for k, i := range idx[:n] {
			devs[k] = j.rows[i].dev
		}
		s.store.applyAll(devs[:n], errs[:n], j.write, tagMemo, desMemo, now, func() {
			s.jobs.endTwinRows(j, idx[:n], errs[:n], now)
		})
		idx = idx[n:]
	}
}

// runMethodJob calls the job's method on each device, paced by the tier's job device operations, with
// up to methodWorkers calls in flight (devices answer after their latency).
func (s *Server) runMethodJob(ctx context.Context, j *job) {
	const methodWorkers = 256
	idx := s.jobs.pendingRows(j)
	lim := s.limits.buckets[QuotaJobDeviceOps]
	use := s.limits.use[QuotaJobDeviceOps]
	sem := make(chan struct{}, methodWorkers)
	var wg sync.WaitGroup
	for _, i := range idx {
		if err := lim.Wait(ctx); err != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		use.used.Add(1)
		r := &j.rows[i]
		s.jobs.startRow(r, time.Now().UnixNano())
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := *j.req.CloudToDeviceMethod
			res, err := s.invoke(ctx, r.dev, &m)
			if ctx.Err() != nil && err != nil {
				return // the job ran out of time (or the server is closing) mid-call
			}
			s.jobs.endMethodRow(r, res, err, time.Now().UnixNano())
		}()
	}
	wg.Wait()
}
