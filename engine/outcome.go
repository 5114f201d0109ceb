package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// Error codes of outcomes the hub reports no code for.
const (
	CodeJobFailed        = "JobFailed"        // the job itself failed (its failureReason says why) before it reached the device
	CodeDeviceNotFound   = "DeviceNotFound"   // the job never took the device: deleted, or its twin no longer matched
	CodeNoMethodResponse = "NoMethodResponse" // the job completed the device without the method's answer
	CodeFailed           = "Failed"           // the device failed without an error code
)

// collect reads the outcomes of a job that ended: counts from its statistics, and from devices.jobs the
// devices behind failures (every device of a direct-method job, whose status codes matter). Twin jobs
// record only devices that did not succeed.
func (r *runner) collect(ctx context.Context, wi, bi int, j *Job, resp *hubapi.JobResponse) error {
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	ids = ids[j.Start:j.End]
	var stats hubapi.DeviceJobStatistics
	if resp.DeviceJobStatistics != nil {
		stats = *resp.DeviceJobStatistics
	}
	method := resp.Type == hubapi.JobTypeDeviceMethod || resp.Type == "" && r.st.waveKind(wi) == KindDirectMethod
	where, expect := "", int(stats.DeviceCount)
	all := method || int(stats.DeviceCount) < len(ids)
	if !all {
		where, expect = "devices.jobs.status <> 'completed'", int(stats.DeviceCount-stats.SucceededCount)
	}
	var rows []hubapi.DeviceJob
	if all || expect > 0 {
		rows, err = r.deviceJobs(ctx, j.ID, where, expect)
		if err != nil {
			return err
		}
	}
	c, record := jobOutcomes(ids, rows, jobRead{method: method, all: all, jobFailed: resp.Status == hubapi.JobFailed, wave: wi, batch: bi})
	j.Counts, j.Collected = c, true
	r.st.Updated = r.now().UTC()
	return r.Store.Update(func(tx *Tx) error {
		for _, id := range slices.Sorted(maps.Keys(record)) { // in key order, as storeSnapshot writes
			o := record[id]
			if err := tx.PutOutcome(id, o); err != nil {
				return err
			}
		}
		return tx.PutState(r.st)
	})
}

// jobRead says how a job's device records were read: for a direct method (every device's answer
// matters), for all of its devices or only those that did not complete, and whether the job itself
// failed; wave and batch are the job's.
type jobRead struct {
	method, all, jobFailed bool
	wave, batch            int
}

// jobOutcomes decides the outcome of each of a job's devices ids from the records read of it (rows),
// and tallies them. It returns the outcomes to record: every device's for a direct method, else only
// those that did not succeed (a device without a record succeeded when only failures were read).
func jobOutcomes(ids []string, rows []hubapi.DeviceJob, how jobRead) (Counts, map[string]DeviceOutcome) {
	outcomes := make(map[string]DeviceOutcome, len(rows))
	for _, row := range rows {
		outcomes[row.DeviceID] = classify(row, how.method)
	}
	c := Counts{Targeted: len(ids)}
	record := map[string]DeviceOutcome{}
	for _, id := range ids {
		o, ok := outcomes[id]
		switch {
		case ok:
		case how.all && how.jobFailed:
			o = DeviceOutcome{Outcome: Failed, ErrorCode: CodeJobFailed}
		case how.all:
			o = DeviceOutcome{Outcome: Failed, ErrorCode: CodeDeviceNotFound}
		default:
			o = DeviceOutcome{Outcome: Succeeded}
		}
		o.Wave, o.Batch = how.wave, how.batch
		c = c.Tally(o.Outcome)
		if how.method || o.Outcome != Succeeded {
			record[id] = o
		}
	}
	return c, record
}

// mayHaveRun reports whether a direct method may have run on the device of outcome o: it answered, or
// failed after delivery. Unreachable devices never got it, timed-out ones were never reached in time,
// and devices the job never took were not called: these get no compensating call, unless an earlier
// attempt may have run the method on them (o.Ran).
func mayHaveRun(o DeviceOutcome) bool {
	return o.Ran || o.Outcome != Unreachable && o.Outcome != TimedOut && o.ErrorCode != CodeDeviceNotFound
}

// deviceJobs reads a job's device records. The devices.jobs view may lag the job's statistics, so a
// read with fewer rows than the statistics promise is repeated a few times before it is accepted.
func (r *runner) deviceJobs(ctx context.Context, jobID, where string, expect int) ([]hubapi.DeviceJob, error) {
	var rows []hubapi.DeviceJob
	for attempt := 0; ; attempt++ {
		var err error
		rows, err = hubapi.Collect[hubapi.DeviceJob](ctx, r.Hub.DeviceJobs(ctx, jobID, where, pageSize(r.Quotas)))
		if err != nil {
			return nil, fmt.Errorf("outcomes of job %s: %w", jobID, err)
		}
		if len(rows) >= expect || attempt >= 5 {
			return rows, nil
		}
		if err := r.sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// classify turns a device's job record into an outcome. A direct method succeeds only with a 2xx
// status; a device that was never connected is unreachable; a device the job had not finished when it
// ended timed out.
func classify(row hubapi.DeviceJob, method bool) DeviceOutcome {
	var code string
	if row.Error != nil {
		code = row.Error.Code
	}
	switch row.Status {
	case hubapi.DeviceJobCompleted:
		if !method {
			return DeviceOutcome{Outcome: Succeeded}
		}
		if row.Outcome == nil || row.Outcome.DeviceMethodResponse == nil {
			return DeviceOutcome{Outcome: Failed, ErrorCode: CodeNoMethodResponse}
		}
		s := int(row.Outcome.DeviceMethodResponse.Status)
		if s < 200 || s > 299 {
			return DeviceOutcome{Outcome: MethodError, MethodStatus: s}
		}
		return DeviceOutcome{Outcome: Succeeded, MethodStatus: s}
	case hubapi.DeviceJobFailed:
		switch {
		case code == hubapi.CodeDeviceNotOnline.Name || code == fmt.Sprint(hubapi.CodeDeviceNotOnline.Number):
			return DeviceOutcome{Outcome: Unreachable, ErrorCode: code}
		case code == hubapi.CodeGatewayTimeout.Name || code == fmt.Sprint(hubapi.CodeGatewayTimeout.Number) ||
			strings.Contains(strings.ToLower(code), "timeout"):
			return DeviceOutcome{Outcome: TimedOut, ErrorCode: code}
		}
		if code == "" {
			code = CodeFailed
		}
		return DeviceOutcome{Outcome: Failed, ErrorCode: code}
	}
	// pending, scheduled, running or canceled when the job ended: never done in time.
	return DeviceOutcome{Outcome: TimedOut, ErrorCode: code}
}
