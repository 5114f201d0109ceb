package emulator

import (
	"github.com/iot-rollout/rollout/hubapi"
)

// The transitions of a job and its rows, as the job runner makes them. Each takes the job store's lock.

// schedule marks a queued job scheduled when its start time is after now, and returns its status and
// start time.
func (js *jobStore) schedule(j *job, now int64) (status string, start int64) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if j.status == hubapi.JobQueued && j.start > now {
		js.setStatus(j, hubapi.JobScheduled, now)
	}
	return j.status, j.start
}

// begin starts j running over devs, one pending row each; when its condition could not be evaluated
// (err), the job fails instead. It reports whether the job runs: false also when it was cancelled.
func (js *jobStore) begin(j *job, devs []*device, err error, now int64) bool {
	js.mu.Lock()
	defer js.mu.Unlock()
	if j.status == hubapi.JobCancelled {
		return false
	}
	j.began = now
	if err != nil {
		j.failure = "The job's query condition could not be evaluated: " + err.Error()
		j.end = now
		js.setStatus(j, hubapi.JobFailed, now)
		return false
	}
	j.rows = make([]deviceJobRow, len(devs))
	for i, d := range devs {
		j.rows[i] = deviceJobRow{job: j, dev: d}
	}
	j.counts[rowPending] = int32(len(devs))
	js.setStatus(j, hubapi.JobRunning, now)
	return true
}

// complete ends a running job: rows not finished by now fail as not reached in time.
func (js *jobStore) complete(j *job, now int64) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for i := range j.rows {
		if r := &j.rows[i]; r.status == rowPending || r.status == rowRunning {
			r.errCode, r.errDesc = DeviceJobErrorTimeout, "The job's maxExecutionTimeInSeconds elapsed before the device was reached"
			r.end = now
			j.setRow(r, rowFailed)
		}
	}
	j.end = now
	js.setStatus(j, hubapi.JobCompleted, now)
}

// pendingRows returns the indexes of j's rows still to do (a resumed job skips finished ones).
func (js *jobStore) pendingRows(j *job) []int {
	js.mu.RLock()
	defer js.mu.RUnlock()
	var idx []int
	for i := range j.rows {
		if j.rows[i].status == rowPending || j.rows[i].status == rowRunning {
			idx = append(idx, i)
		}
	}
	return idx
}

// startRow marks a method job's row running from now.
func (js *jobStore) startRow(r *deviceJobRow, now int64) {
	js.mu.Lock()
	defer js.mu.Unlock()
	r.start = now
	r.job.setRow(r, rowRunning)
}

// endMethodRow records the device's answer to a method job's call (res), or the hub's error (err).
func (js *jobStore) endMethodRow(r *deviceJobRow, res *hubapi.MethodResult, err error, now int64) {
	js.mu.Lock()
	defer js.mu.Unlock()
	r.end = now
	if err != nil {
		code, desc := "ServerError", err.Error()
		if he, ok := err.(*hubError); ok {
			code, desc = he.code.Name, he.msg
		}
		r.errCode, r.errDesc = code, desc
		r.job.setRow(r, rowFailed)
		return
	}
	r.result = res
	r.job.setRow(r, rowCompleted)
}

// endTwinRows records the outcome of a twin job's write to the devices of rows idx: errs[k] is the
// outcome for idx[k] (errDeviceGone for a deleted device).
func (js *jobStore) endTwinRows(j *job, idx []int, errs []error, now int64) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for k, i := range idx {
		r := &j.rows[i]
		r.start, r.end = now, now
		switch err := errs[k]; {
		case err == errDeviceGone:
			r.errCode, r.errDesc = DeviceJobErrorNotFound, "Device "+r.dev.id+" not registered"
			j.setRow(r, rowFailed)
		case err != nil:
			r.errCode, r.errDesc = "ArgumentInvalid", err.Error()
			j.setRow(r, rowFailed)
		default:
			j.setRow(r, rowCompleted)
		}
	}
}
