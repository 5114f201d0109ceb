package emulator

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/iot-rollout/rollout/hubapi"
)

// createJob registers a job and starts its runner.
func (s *Server) createJob(req *hubapi.JobRequest, w *twinWrite) (*hubapi.JobResponse, error) {
	now := time.Now()
	js := s.jobs
	js.mu.Lock()
	defer js.mu.Unlock()
	if _, dup := js.byID[req.JobID]; dup {
		return nil, hubErr(hubapi.CodeJobAlreadyExists, "A job with id '%s' already exists", req.JobID)
	}
	// Scheduled and queued jobs count towards the concurrent-job limit as running ones do (unconfirmed
	// in the reference; the strict reading).
	if js.active() >= s.quotas.ConcurrentJobs {
		return nil, hubErr(hubapi.CodeThrottlingMaxActiveJobCountExceeded,
			"The maximum number of active jobs (%d on the %s tier) has been reached", s.quotas.ConcurrentJobs, s.quotas.Tier)
	}
	j := &job{id: req.JobID, idAny: req.JobID, typAny: req.Type, req: *req, write: w, created: now.UnixNano(), cancel: make(chan struct{})}
	j.start = j.created
	if req.StartTime != nil && !req.StartTime.IsZero() {
		j.start = req.StartTime.UnixNano()
		j.req.StartTime = req.StartTime
	} else {
		t := hubapi.NewTime(now)
		j.req.StartTime = &t
	}
	js.byID[j.id] = j
	js.order = append(js.order, j)
	js.setStatus(j, hubapi.JobQueued, j.created)
	resp := j.response()
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

// cancelJob cancels a job that has not started running; a running or finished job refuses.
func (s *Server) cancelJob(id string) (*hubapi.JobResponse, error) {
	js := s.jobs
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	if !ok {
		return nil, hubErr(hubapi.CodeJobNotFound, "Job %s not found", id)
	}
	switch j.status {
	case hubapi.JobQueued, hubapi.JobScheduled:
		now := time.Now().UnixNano()
		for i := range j.rows {
			if j.rows[i].status == rowPending {
				j.setRow(&j.rows[i], rowCanceled)
			}
		}
		j.end = now
		js.setStatus(j, hubapi.JobCancelled, now)
		close(j.cancel)
	case hubapi.JobCancelled:
	default:
		// The hub refuses to cancel a running job; the exact code is unconfirmed (reference §3.3).
		return nil, hubErr(hubapi.CodeInvalidOperation, "Job %s is %s and cannot be cancelled", id, j.status)
	}
	return j.response(), nil
}

// runJob drives one job: queued, scheduled until its start time, running over the devices its condition
// selects at start, then completed (or failed when the condition cannot be evaluated).
func (s *Server) runJob(j *job) {
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-j.cancel:
		case <-s.done:
		}
		return false
	}
	js := s.jobs
	js.mu.Lock()
	if j.status == hubapi.JobQueued && j.start > time.Now().UnixNano() {
		js.setStatus(j, hubapi.JobScheduled, time.Now().UnixNano())
	}
	status, start := j.status, j.start
	js.mu.Unlock()
	if status == hubapi.JobQueued || status == hubapi.JobScheduled {
		if d := time.Until(time.Unix(0, start)); d > 0 && !wait(d) {
			return
		}
		devs, err := s.selectDevices(j.req.QueryCondition)
		now := time.Now().UnixNano()
		js.mu.Lock()
		if j.status == hubapi.JobCancelled {
			js.mu.Unlock()
			return
		}
		j.began = now
		if err != nil {
			j.failure = "The job's query condition could not be evaluated: " + err.Error()
			j.end = now
			js.setStatus(j, hubapi.JobFailed, now)
			js.mu.Unlock()
			return
		}
		j.rows = make([]deviceJobRow, len(devs))
		for i, d := range devs {
			j.rows[i] = deviceJobRow{job: j, dev: d}
		}
		j.counts[rowPending] = int32(len(devs))
		js.setStatus(j, hubapi.JobRunning, now)
		js.mu.Unlock()
	} else if status != hubapi.JobRunning {
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
	now := time.Now().UnixNano()
	js.mu.Lock()
	for i := range j.rows {
		if r := &j.rows[i]; r.status == rowPending || r.status == rowRunning {
			r.errCode, r.errDesc = DeviceJobErrorTimeout, "The job's maxExecutionTimeInSeconds elapsed before the device was reached"
			r.end = now
			j.setRow(r, rowFailed)
		}
	}
	j.end = now
	js.setStatus(j, hubapi.JobCompleted, now)
	js.mu.Unlock()
}

// pending returns the indexes of rows still pending (a resumed job skips finished ones).
func (j *job) pending() []int {
	var idx []int
	for i := range j.rows {
		if j.rows[i].status == rowPending || j.rows[i].status == rowRunning {
			idx = append(idx, i)
		}
	}
	return idx
}

// runTwinJob applies the job's patch to each device, paced by the tier's job device operations.
func (s *Server) runTwinJob(ctx context.Context, j *job) {
	js := s.jobs
	js.mu.RLock()
	idx := j.pending()
	js.mu.RUnlock()
	tagMemo, desMemo := newPatchMemo(j.write.tags), newPatchMemo(j.write.desired)
	lim := s.limits.buckets[QuotaJobDeviceOps]
	use := s.limits.use[QuotaJobDeviceOps]
	batch := 1
	if lim.Limit() == rate.Inf {
		batch = 2048
	}
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
		s.store.mu.Lock()
		js.mu.Lock()
		for _, i := range idx[:n] {
			r := &j.rows[i]
			r.start, r.end = now, now
			if r.dev.deleted {
				r.errCode, r.errDesc = DeviceJobErrorNotFound, "Device "+r.dev.id+" not registered"
				j.setRow(r, rowFailed)
				continue
			}
			if err := s.store.applyWrite(r.dev, j.write, tagMemo, desMemo, now); err != nil {
				r.errCode, r.errDesc = "ArgumentInvalid", err.Error()
				j.setRow(r, rowFailed)
				continue
			}
			j.setRow(r, rowCompleted)
		}
		js.mu.Unlock()
		s.store.mu.Unlock()
		idx = idx[n:]
	}
}

// runMethodJob calls the job's method on each device, paced by the tier's job device operations, with
// up to methodWorkers calls in flight (devices answer after their latency).
func (s *Server) runMethodJob(ctx context.Context, j *job) {
	const methodWorkers = 256
	js := s.jobs
	js.mu.RLock()
	idx := j.pending()
	js.mu.RUnlock()
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
		js.mu.Lock()
		r.start = time.Now().UnixNano()
		j.setRow(r, rowRunning)
		js.mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := *j.req.CloudToDeviceMethod
			res, err := s.invoke(ctx, r.dev, &m)
			if ctx.Err() != nil && err != nil {
				return // the job ran out of time (or the server is closing) mid-call
			}
			now := time.Now().UnixNano()
			js.mu.Lock()
			defer js.mu.Unlock()
			r.end = now
			if err != nil {
				code, desc := "ServerError", err.Error()
				if he, ok := err.(*hubError); ok {
					code, desc = he.code.Name, he.msg
				}
				r.errCode, r.errDesc = code, desc
				j.setRow(r, rowFailed)
				return
			}
			r.result = res
			j.setRow(r, rowCompleted)
		}()
	}
	wg.Wait()
}

// resumeJobs restarts the runners of jobs that had not ended when the data file was written.
func (s *Server) resumeJobs() {
	s.jobs.mu.RLock()
	defer s.jobs.mu.RUnlock()
	for _, j := range s.jobs.order {
		switch j.status {
		case hubapi.JobQueued, hubapi.JobScheduled, hubapi.JobRunning:
			s.startRunner(j)
		}
	}
}
