package emulator

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// Per-device job error codes the emulator writes into devices.jobs rows. DeviceNotOnline and
// GatewayTimeout are the hub's; the reference found no code for a device a job never reached before its
// maxExecutionTimeInSeconds ran out, so the emulator names that one JobExecutionTimeout (a choice).
const (
	DeviceJobErrorNotOnline      = "DeviceNotOnline"
	DeviceJobErrorGatewayTimeout = "GatewayTimeout"
	DeviceJobErrorNotFound       = "DeviceNotFound"
	DeviceJobErrorTimeout        = "JobExecutionTimeout"
)

// defaultMaxExecution is used when a job request gives no maxExecutionTimeInSeconds (the Node SDK's
// default; the hub's own is undocumented).
const defaultMaxExecution = 3600

// Per-device row states, in the order a row moves through them.
const (
	rowPending uint8 = iota
	rowRunning
	rowCompleted
	rowFailed
	rowCanceled
)

var rowStatus = [...]string{hubapi.DeviceJobPending, hubapi.DeviceJobRunning, hubapi.DeviceJobCompleted, hubapi.DeviceJobFailed, hubapi.DeviceJobCanceled}

// rowStatusAny holds the statuses boxed once, for query evaluation without allocation.
var rowStatusAny = func() (a [len(rowStatus)]any) {
	for i, s := range rowStatus {
		a[i] = s
	}
	return
}()

// job is a v2 job and its per-device rows.
type job struct {
	id      string
	idAny   any
	typAny  any
	req     hubapi.JobRequest
	write   *twinWrite
	status  string
	created int64
	start   int64 // requested start (created when none was given)
	began   int64 // when it started running
	end     int64
	failure string
	rows    []deviceJobRow
	counts  [5]int32 // rows per state
	cancel  chan struct{}
}

// deviceJobRow is one device's record in a job (a devices.jobs row).
type deviceJobRow struct {
	job     *job
	dev     *device
	status  uint8
	start   int64
	end     int64
	result  *hubapi.MethodResult
	errCode string
	errDesc string
}

// jobStore holds the jobs. Its methods take mu themselves, as the store's do; the helpers that say
// "callers hold mu" serve those methods only. Lock order: store.mu before jobStore.mu (see
// store.applyAll).
type jobStore struct {
	mu       sync.RWMutex
	byID     map[string]*job
	order    []*job
	timeline []JobEvent
}

func newJobStore() *jobStore { return &jobStore{byID: map[string]*job{}} }

// setStatus changes a job's status and records it in the timeline; callers hold mu.
func (js *jobStore) setStatus(j *job, status string, now int64) {
	j.status = status
	js.timeline = append(js.timeline, JobEvent{JobID: j.id, Status: status, Time: time.Unix(0, now).UTC()})
}

func (js *jobStore) active() int {
	n := 0
	for _, j := range js.order {
		switch j.status {
		case hubapi.JobQueued, hubapi.JobScheduled, hubapi.JobRunning:
			n++
		}
	}
	return n
}

// setRow moves a row to a state, keeping the job's counts; callers hold mu.
func (j *job) setRow(r *deviceJobRow, st uint8) {
	j.counts[r.status]--
	r.status = st
	j.counts[st]++
}

// response renders a job as the hub reports it; callers hold mu (read).
func (j *job) response() *hubapi.JobResponse {
	r := &hubapi.JobResponse{
		JobID: j.id, QueryCondition: j.req.QueryCondition, Type: j.req.Type, Status: j.status,
		CreatedTime: optTime(j.created), StartTime: optTime(j.start), EndTime: optTime(j.end),
		MaxExecutionTimeInSeconds: j.req.MaxExecutionTimeInSeconds,
		CloudToDeviceMethod:       j.req.CloudToDeviceMethod, UpdateTwin: j.req.UpdateTwin,
		FailureReason: j.failure,
		DeviceJobStatistics: &hubapi.DeviceJobStatistics{
			DeviceCount:    int32(len(j.rows)),
			PendingCount:   j.counts[rowPending],
			RunningCount:   j.counts[rowRunning],
			SucceededCount: j.counts[rowCompleted],
			FailedCount:    j.counts[rowFailed],
		},
	}
	if j.failure != "" {
		r.StatusMessage = j.failure
	}
	return r
}

// deviceJob renders a row; callers hold mu (read).
func (r *deviceJobRow) deviceJob() *hubapi.DeviceJob {
	last := r.end
	if last == 0 {
		last = r.start
	}
	if last == 0 {
		last = r.job.began
	}
	dj := &hubapi.DeviceJob{
		DeviceID: r.dev.id, JobID: r.job.id, JobType: r.job.req.Type, Status: rowStatus[r.status],
		StartTimeUTC: optTime(r.start), EndTimeUTC: optTime(r.end), CreatedDateTimeUTC: optTime(r.job.began),
		LastUpdatedDateTimeUTC: optTime(last), Outcome: &hubapi.DeviceJobOutcome{DeviceMethodResponse: r.result},
	}
	if r.errCode != "" {
		dj.Error = &hubapi.DeviceJobError{Code: r.errCode, Description: r.errDesc}
	}
	return dj
}

// optTime is a job time in unix nanoseconds as the wire carries it: nil (omitted) when not yet set.
func optTime(ns int64) *hubapi.Time {
	if ns == 0 {
		return nil
	}
	t := hubapi.NewTime(time.Unix(0, ns))
	return &t
}

// validJobID enforces the job id rules: 1-64 US-ASCII letters, digits and '-'.
func validJobID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// newJob makes the job a creation request asks for, queued at now.
func newJob(req *hubapi.JobRequest, w *twinWrite, now time.Time) *job {
	j := &job{id: req.JobID, idAny: req.JobID, typAny: req.Type, req: *req, write: w, created: now.UnixNano(), cancel: make(chan struct{})}
	j.start = j.created
	if req.StartTime != nil && !req.StartTime.IsZero() {
		j.start = req.StartTime.UnixNano()
		j.req.StartTime = req.StartTime
	} else {
		t := hubapi.NewTime(now)
		j.req.StartTime = &t
	}
	return j
}

// create registers a new job, queued, unless its id is taken or the tier's concurrent-job limit is
// reached.
func (js *jobStore) create(j *job, q hubapi.Quotas) (*hubapi.JobResponse, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if _, dup := js.byID[j.id]; dup {
		return nil, hubErr(hubapi.CodeJobAlreadyExists, "A job with id '%s' already exists", j.id)
	}
	// Scheduled and queued jobs count towards the concurrent-job limit as running ones do (unconfirmed
	// in the reference; the strict reading).
	if js.active() >= q.ConcurrentJobs {
		return nil, hubErr(hubapi.CodeThrottlingMaxActiveJobCountExceeded,
			"The maximum number of active jobs (%d on the %s tier) has been reached", q.ConcurrentJobs, q.Tier)
	}
	js.byID[j.id] = j
	js.order = append(js.order, j)
	js.setStatus(j, hubapi.JobQueued, j.created)
	return j.response(), nil
}

// restore adds a job read back from the data file, with its timeline.
func (js *jobStore) restore(j *job, events []JobEvent) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	if _, dup := js.byID[j.id]; dup {
		return fmt.Errorf("job %s appears twice", j.id)
	}
	js.byID[j.id] = j
	js.order = append(js.order, j)
	js.timeline = append(js.timeline, events...)
	return nil
}

// cancel cancels a job that has not started running; a running or finished job refuses.
func (js *jobStore) cancel(id string, now int64) (*hubapi.JobResponse, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, err := js.get(id)
	if err != nil {
		return nil, err
	}
	switch j.status {
	case hubapi.JobQueued, hubapi.JobScheduled:
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

// get returns the job of id, or the hub's JobNotFound; callers hold mu.
func (js *jobStore) get(id string) (*job, error) {
	j, ok := js.byID[id]
	if !ok {
		return nil, hubErr(hubapi.CodeJobNotFound, "Job %s not found", id)
	}
	return j, nil
}

// response is the job of id as the hub reports it.
func (js *jobStore) response(id string) (*hubapi.JobResponse, error) {
	js.mu.RLock()
	defer js.mu.RUnlock()
	j, err := js.get(id)
	if err != nil {
		return nil, err
	}
	return j.response(), nil
}

// filter returns the jobs of a type and a status ("" for any), matched case-insensitively, in creation
// order.
func (js *jobStore) filter(typ, status string) []*job {
	js.mu.RLock()
	defer js.mu.RUnlock()
	var jobs []*job
	for _, j := range js.order {
		if typ != "" && !strings.EqualFold(typ, j.req.Type) {
			continue
		}
		if status != "" && !strings.EqualFold(status, j.status) {
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// unfinished returns the jobs that have not ended.
func (js *jobStore) unfinished() []*job {
	js.mu.RLock()
	defer js.mu.RUnlock()
	var out []*job
	for _, j := range js.order {
		switch j.status {
		case hubapi.JobQueued, hubapi.JobScheduled, hubapi.JobRunning:
			out = append(out, j)
		}
	}
	return out
}

// responsesRenderer renders jobs as the hub reports them, each page as they stand when it is served.
func (js *jobStore) responsesRenderer(jobs []*job) func(b []byte, from, to int) []byte {
	return renderLive(&js.mu, jobs, (*job).response)
}

// rowsRenderer renders devices.jobs rows, each page as they stand when it is served.
func (js *jobStore) rowsRenderer(rows []*deviceJobRow) func(b []byte, from, to int) []byte {
	return renderLive(&js.mu, rows, (*deviceJobRow).deviceJob)
}

// events returns the timeline of every job.
func (js *jobStore) events() []JobEvent {
	js.mu.RLock()
	defer js.mu.RUnlock()
	return append([]JobEvent{}, js.timeline...)
}

// responses returns every job as the hub reports it, in creation order, and the timeline of them all.
func (js *jobStore) responses() ([]*hubapi.JobResponse, []JobEvent) {
	js.mu.RLock()
	defer js.mu.RUnlock()
	var jobs []*hubapi.JobResponse
	for _, j := range js.order {
		jobs = append(jobs, j.response())
	}
	return jobs, append([]JobEvent(nil), js.timeline...)
}

// describe returns the job of id as the hub reports it, with its own timeline.
func (js *jobStore) describe(id string) (*hubapi.JobResponse, []JobEvent, error) {
	js.mu.RLock()
	defer js.mu.RUnlock()
	j, err := js.get(id)
	if err != nil {
		return nil, nil, err
	}
	return j.response(), js.eventsOf(j), nil
}

// forEach calls f with each job, in creation order, and its timeline, under the read lock, until f fails.
func (js *jobStore) forEach(f func(j *job, events []JobEvent) error) error {
	js.mu.RLock()
	defer js.mu.RUnlock()
	for _, j := range js.order {
		if err := f(j, js.eventsOf(j)); err != nil {
			return err
		}
	}
	return nil
}

// eventsOf returns j's status changes; callers hold mu.
func (js *jobStore) eventsOf(j *job) []JobEvent {
	var events []JobEvent
	for _, e := range js.timeline {
		if e.JobID == j.id {
			events = append(events, e)
		}
	}
	return events
}
