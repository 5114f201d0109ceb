package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
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
	method := resp.Type == hubapi.JobTypeDeviceMethod || resp.Type == "" && r.st.waveKind(wi) == "directMethod"
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
	outcomes := map[string]DeviceOutcome{}
	for _, row := range rows {
		o := classify(row, method)
		o.Wave, o.Batch = wi, bi
		outcomes[row.DeviceID] = o
	}
	c := Counts{Targeted: len(ids)}
	record := map[string]DeviceOutcome{}
	for _, id := range ids {
		o, ok := outcomes[id]
		switch {
		case ok:
		case all && resp.Status == hubapi.JobFailed:
			// The job itself failed (its failureReason says why) before it reached this device.
			o = DeviceOutcome{Outcome: Failed, Wave: wi, Batch: bi, ErrorCode: "JobFailed"}
		case all:
			// The job never took this device: it was deleted or its twin no longer matched.
			o = DeviceOutcome{Outcome: Failed, Wave: wi, Batch: bi, ErrorCode: "DeviceNotFound"}
		default:
			o = DeviceOutcome{Outcome: Succeeded, Wave: wi, Batch: bi}
		}
		switch o.Outcome {
		case Succeeded:
			c.Succeeded++
		case MethodError:
			c.Failed++
			c.MethodError++
		case Failed:
			c.Failed++
		case TimedOut:
			c.TimedOut++
		case Unreachable:
			c.Unreachable++
		}
		if method || o.Outcome != Succeeded {
			record[id] = o
		}
	}
	j.Counts, j.Collected = c, true
	r.st.Updated = r.now().UTC()
	return r.Store.Update(func(tx *Tx) error {
		for id, o := range record {
			if err := tx.PutOutcome(id, o); err != nil {
				return err
			}
		}
		return tx.PutState(r.st)
	})
}

// deviceJobs reads a job's device records. The devices.jobs view may lag the job's statistics, so a
// read with fewer rows than the statistics promise is repeated a few times before it is accepted.
func (r *runner) deviceJobs(ctx context.Context, jobID, where string, expect int) ([]hubapi.DeviceJob, error) {
	var rows []hubapi.DeviceJob
	for attempt := 0; ; attempt++ {
		rows = rows[:0]
		pager := r.Hub.DeviceJobs(ctx, jobID, where, pageSize(r.Quotas))
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("outcomes of job %s: %w", jobID, err)
			}
			for _, raw := range page {
				var row hubapi.DeviceJob
				if err := json.Unmarshal(raw, &row); err != nil {
					return nil, fmt.Errorf("outcomes of job %s: %w", jobID, err)
				}
				rows = append(rows, row)
			}
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
			return DeviceOutcome{Outcome: Failed, ErrorCode: "NoMethodResponse"}
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
			code = "Failed"
		}
		return DeviceOutcome{Outcome: Failed, ErrorCode: code}
	}
	// pending, scheduled, running or canceled when the job ended: never done in time.
	return DeviceOutcome{Outcome: TimedOut, ErrorCode: code}
}
