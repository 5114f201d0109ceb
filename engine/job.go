package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

func (r *runner) concurrentJobs() int {
	if n := r.Quotas.ConcurrentJobs; n > 0 {
		return n
	}
	return 1
}

// pollInterval paces job polling. Every GetJob spends one of the hub's job operations, which also
// create the next job, so the engine polls when the running jobs' remaining device operations should
// be done, at the tier's rate or the faster rate observed (0: none yet), and between such estimates no
// faster than the job budget allows.
func (r *runner) pollInterval(pending, running int, observed float64) time.Duration {
	floor := r.PollMin
	if floor <= 0 {
		floor = 20 * time.Millisecond
		if jpm := r.Quotas.JobOpsPerMinute; jpm > 0 && !math.IsInf(jpm, 1) {
			if d := time.Duration(60 / jpm * float64(max(running, 1)) * float64(time.Second)); d > floor {
				floor = d
			}
		}
	}
	d := floor
	if ops := r.Quotas.JobDeviceOpsPerSec; ops > 0 && !math.IsInf(ops, 1) && pending > 0 {
		ops = max(ops, observed)
		// The estimated end, plus a small margin so that the poll finds the job ended.
		est := time.Duration(float64(pending)/ops*float64(time.Second)) + 20*time.Millisecond
		d = max(d, est)
	}
	return min(d, 5*time.Second)
}

// startJobs creates the batch's jobs that JobsToStart names, through ensureJobs, which records their
// intent first and re-attaches a job a previous run may have created without hearing back.
func (r *runner) startJobs(ctx context.Context, wi, bi int, jobs []*Job, pw *plan.Wave) error {
	start := JobsToStart(jobs, r.concurrentJobs())
	if len(start) == 0 {
		return nil
	}
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	existed, err := r.ensureJobs(ctx, start, func(j *Job) *hubapi.JobRequest {
		return forwardJob(j.ID, InCondition(ids[j.Start:j.End]), pw)
	})
	if err != nil {
		return err
	}
	for i, j := range start {
		event := EventJobCreated
		if existed[i] {
			event = EventJobAttached
		}
		r.emit(Event{Type: event, Wave: wi, Batch: bi, Job: j.ID, Devices: j.End - j.Start})
	}
	return nil
}

// forwardJob is the job request that applies a wave's action to the devices of cond.
func forwardJob(id, cond string, pw *plan.Wave) *hubapi.JobRequest {
	// The start time is the hub's "now": it is read from the wall clock, not the engine's clock, because
	// the hub runs a job whose start time is in the future only later.
	start := hubapi.NewTime(time.Now().UTC())
	req := &hubapi.JobRequest{JobID: id, QueryCondition: cond, StartTime: &start,
		MaxExecutionTimeInSeconds: int64(pw.Timeout / time.Second)}
	if req.MaxExecutionTimeInSeconds <= 0 {
		req.MaxExecutionTimeInSeconds = 3600
	}
	if tu := pw.Action.TwinUpdate; tu != nil {
		req.Type = hubapi.JobTypeUpdateTwin
		req.UpdateTwin = &hubapi.Twin{ETag: "*", Tags: tu.Tags}
		if len(tu.Desired) > 0 {
			req.UpdateTwin.Properties = &hubapi.TwinProperties{Desired: tu.Desired}
		}
	} else {
		req.Type = hubapi.JobTypeDeviceMethod
		req.CloudToDeviceMethod = methodCall(pw.Action.DirectMethod)
	}
	return req
}

func methodCall(m *plan.DirectMethod) *hubapi.CloudToDeviceMethod {
	c := &hubapi.CloudToDeviceMethod{MethodName: m.Name, Payload: m.Payload,
		ResponseTimeoutInSeconds: int32(m.ResponseTimeout / time.Second),
		ConnectTimeoutInSeconds:  int32(m.ConnectTimeout / time.Second)}
	if len(c.Payload) == 0 {
		c.Payload = json.RawMessage("null")
	}
	if c.ResponseTimeoutInSeconds == 0 {
		c.ResponseTimeoutInSeconds = 30
	}
	return c
}

// errJobsOpen is awaitJobs' answer, with NoWait, while jobs are still running on the hub.
var errJobsOpen = errors.New("jobs are still running on the hub")

// jobsProgress is where a set of jobs stands after a poll.
type jobsProgress struct {
	counts  Counts // outcomes of the ended jobs, and what the running ones did so far
	pending int    // device operations the running jobs have left
	open    int    // jobs created and not ended
	ended   bool   // every job ended and was settled
}

// pollJobs reads each created job that has not been settled and settles those that ended (settle
// records their outcome), and sums where all of jobs stand. It is the one job-polling step of forward
// and compensating jobs alike.
func (r *runner) pollJobs(ctx context.Context, jobs []*Job, settle settleFunc) (jobsProgress, error) {
	var p jobsProgress
	for _, j := range jobs {
		if !j.Created || j.Collected {
			p.counts = p.counts.Add(j.Counts)
			continue
		}
		resp, err := r.Hub.GetJob(ctx, j.ID)
		if err != nil {
			return p, fmt.Errorf("job %s: %w", j.ID, err)
		}
		j.Status = resp.Status
		if resp.Terminal() {
			if err := settle(ctx, j, resp); err != nil {
				return p, err
			}
			p.counts = p.counts.Add(j.Counts)
			continue
		}
		p.open++
		c, pending := StatsCounts(resp.DeviceJobStatistics, j.End-j.Start)
		p.counts, p.pending = p.counts.Add(c), p.pending+pending
	}
	p.ended = AllSettled(jobs)
	return p, nil
}

// settleFunc records the outcome of a job that ended.
type settleFunc func(context.Context, *Job, *hubapi.JobResponse) error

// collector settles the forward jobs of batch bi of wave wi: each device's outcome (see collect).
func (r *runner) collector(wi, bi int) settleFunc {
	return func(ctx context.Context, j *Job, resp *hubapi.JobResponse) error {
		return r.collect(ctx, wi, bi, j, resp)
	}
}

// settleByStatistics settles a compensating job from its statistics alone: its outcomes are not
// recorded per device, since the forward outcomes are what rollback and the report read.
func (r *runner) settleByStatistics(_ context.Context, j *Job, resp *hubapi.JobResponse) error {
	c, _ := StatsCounts(resp.DeviceJobStatistics, j.End-j.Start)
	j.Counts, j.Collected = c.Ended(), true
	return r.save()
}

// awaitJobs polls jobs until each has ended and was settled (with NoWait: polls once, and gives
// errJobsOpen while any runs).
func (r *runner) awaitJobs(ctx context.Context, jobs []*Job, settle settleFunc) error {
	for {
		p, err := r.pollJobs(ctx, jobs, settle)
		if err != nil || p.ended {
			return err
		}
		if r.NoWait {
			return errJobsOpen
		}
		if err := r.sleep(ctx, r.pollInterval(p.pending, p.open, 0)); err != nil {
			return err
		}
	}
}

// rollbackJobTimeout gives a compensating job time for its devices to answer.
func rollbackJobTimeout(m *plan.DirectMethod) time.Duration {
	d := 10*time.Minute + m.ResponseTimeout + m.ConnectTimeout
	return d
}

// ensureJobs creates jobs with the requests req builds, unless they exist, and reports which existed:
// intent first (the intents of all of jobs in one save, before any of them is created), then for a job
// whose intent a previous run recorded a lookup by id (it may have created the job without hearing
// back), then the create (a duplicate id means it exists), then one save of what was created. It is
// the one way the engine creates jobs, and it confirms the rollout's lock is still held right before
// the creates (a holder whose shared lease was broken stops there, see Store.fence), so a crash at any point never runs a job's devices twice: a
// job created but not yet saved as created has its intent recorded, and the next run looks it up.
func (r *runner) ensureJobs(ctx context.Context, jobs []*Job, req func(*Job) *hubapi.JobRequest) (existed []bool, err error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	resumed := make([]bool, len(jobs))
	fresh := false
	for i, j := range jobs {
		resumed[i] = j.Intent
		if !j.Intent {
			j.Intent, fresh = true, true
		}
	}
	if fresh {
		if err := r.save(); err != nil {
			return nil, err
		}
	}
	if err := r.Store.fence(ctx); err != nil {
		return nil, err
	}
	existed = make([]bool, len(jobs))
	for i, j := range jobs {
		if existed[i], err = r.createJob(ctx, j, resumed[i], req); err != nil {
			_ = r.save() // keep what was created; the rest have their intent
			return nil, err
		}
	}
	return existed, r.save()
}

// createJob creates job j, whose intent is saved, unless it exists; resumed says a previous run
// recorded the intent, so the job may exist already.
func (r *runner) createJob(ctx context.Context, j *Job, resumed bool, req func(*Job) *hubapi.JobRequest) (existed bool, err error) {
	if resumed && !parted(r.Hub) {
		resp, err := r.Hub.GetJob(ctx, j.ID)
		switch {
		case err == nil:
			j.Created, j.Status = true, resp.Status
			return true, nil
		case !hubapi.IsNotFound(err):
			return false, fmt.Errorf("job %s: %w", j.ID, err)
		}
	}
	resp, err := r.Hub.CreateJob(ctx, req(j))
	switch {
	case err == nil:
		if resp != nil {
			j.Status = resp.Status
		}
	case hubapi.IsAlreadyExists(err):
		existed = true
	default:
		return false, fmt.Errorf("create job %s: %w", j.ID, err)
	}
	j.Created = true
	return existed, nil
}
