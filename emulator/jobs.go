package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

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

// jobStore holds the jobs. Lock order: store.mu before jobStore.mu.
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

// parseJobRequest decodes and checks a job creation body. Errors are the hub's: 400 GenericBadRequest for
// a wrong job type, 400 ArgumentNull or ArgumentInvalid for missing or bad fields, 412 PreconditionFailed
// for an update job whose etag is not "*" or a condition over the query size limit.
func parseJobRequest(pathID string, body []byte, maxQuery int) (*hubapi.JobRequest, *twinWrite, error) {
	var req hubapi.JobRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, hubErr(hubapi.CodeIotHubFormatError, "The job request is not valid JSON: %v", err)
	}
	if req.JobID == "" {
		req.JobID = pathID
	}
	if req.JobID != pathID {
		return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "The jobId in the body (%s) differs from the one in the path (%s)", req.JobID, pathID)
	}
	var w *twinWrite
	switch req.Type {
	case hubapi.JobTypeDeviceMethod:
		m := req.CloudToDeviceMethod
		if m == nil || m.MethodName == "" {
			return nil, nil, hubErr(hubapi.CodeArgumentNull, "cloudToDeviceMethod.methodName is required for a scheduleDeviceMethod job")
		}
		if err := checkMethod(m); err != nil {
			return nil, nil, err
		}
		req.UpdateTwin = nil
	case hubapi.JobTypeUpdateTwin:
		var raw struct {
			UpdateTwin map[string]json.RawMessage `json:"updateTwin"`
		}
		_ = json.Unmarshal(body, &raw)
		if req.UpdateTwin == nil || raw.UpdateTwin == nil {
			return nil, nil, hubErr(hubapi.CodeArgumentNull, "updateTwin is required for a scheduleUpdateTwin job")
		}
		if _, ok := raw.UpdateTwin["desired"]; ok {
			return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "updateTwin has a top-level 'desired'; desired properties go under properties.desired")
		}
		if strings.Trim(strings.TrimSpace(req.UpdateTwin.ETag), `"`) != "*" {
			return nil, nil, hubErr(hubapi.CodePreconditionFailed, "A scheduleUpdateTwin job needs updateTwin.etag \"*\"")
		}
		var err error
		if w, err = patchWrite(req.UpdateTwin); err != nil {
			return nil, nil, err
		}
		req.CloudToDeviceMethod = nil
		req.UpdateTwin = &hubapi.Twin{ETag: "*", Tags: req.UpdateTwin.Tags, Properties: req.UpdateTwin.Properties}
	default:
		return nil, nil, hubErr(hubapi.CodeGenericBadRequest, "BadRequest")
	}
	if strings.TrimSpace(req.QueryCondition) == "" {
		return nil, nil, hubErr(hubapi.CodeArgumentNull, "queryCondition is required; use * for every device")
	}
	if len(req.QueryCondition) > maxQuery {
		// The hub answers an oversized job condition with 412 (reference: query-and-jobs §2.2).
		return nil, nil, hubErr(hubapi.CodePreconditionFailed, "The query condition is %d characters long; the limit is %d", len(req.QueryCondition), maxQuery)
	}
	if req.MaxExecutionTimeInSeconds < 0 {
		return nil, nil, hubErr(hubapi.CodeArgumentInvalid, "maxExecutionTimeInSeconds must not be negative")
	}
	if req.MaxExecutionTimeInSeconds == 0 {
		req.MaxExecutionTimeInSeconds = defaultMaxExecution
	}
	return &req, w, nil
}

// patchWrite turns a twin patch (PATCH body or a job's updateTwin) into a validated write.
func patchWrite(t *hubapi.Twin) (*twinWrite, error) {
	w := &twinWrite{}
	if len(t.Tags) > 0 {
		if err := validateSection(t.Tags, true, math.MaxInt); err != nil {
			return nil, hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
		w.tags, w.hasTags = t.Tags, true
	}
	if t.Properties != nil {
		if des := stripSystemKeys(t.Properties.Desired); len(des) > 0 {
			if err := validateSection(des, true, math.MaxInt); err != nil {
				return nil, hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
			}
			w.desired, w.hasDesired = des, true
		}
	}
	return w, nil
}

// checkMethod checks a direct-method call's fields and fills in the default response timeout.
func checkMethod(m *hubapi.CloudToDeviceMethod) error {
	if m.MethodName == "" {
		return hubErr(hubapi.CodeArgumentNull, "methodName is required")
	}
	if len(m.MethodName) > 1024 {
		return hubErr(hubapi.CodeArgumentInvalid, "methodName is too long")
	}
	if m.ResponseTimeoutInSeconds == 0 {
		m.ResponseTimeoutInSeconds = 30
	}
	if m.ResponseTimeoutInSeconds < 5 || m.ResponseTimeoutInSeconds > 300 {
		return hubErr(hubapi.CodeArgumentInvalid, "responseTimeoutInSeconds must be between 5 and 300, got %d", m.ResponseTimeoutInSeconds)
	}
	if m.ConnectTimeoutInSeconds < 0 || m.ConnectTimeoutInSeconds > 300 {
		return hubErr(hubapi.CodeArgumentInvalid, "connectTimeoutInSeconds must be between 0 and 300, got %d", m.ConnectTimeoutInSeconds)
	}
	if len(m.Payload) > 128*1024 {
		return hubErr(hubapi.CodeMessageTooLarge, "The method payload is larger than 128 KB")
	}
	if len(bytes.TrimSpace(m.Payload)) == 0 {
		m.Payload = json.RawMessage("null")
	}
	return nil
}

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
