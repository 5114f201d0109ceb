package emulator

import (
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
