package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// runBatch runs batch bi of wave wi until its jobs ended and its outcomes are judged. It returns
// waiting=true, with nothing left to do right now, when NoWait is set and jobs are still running, and
// returns early (nil error) when Stop is closed; the jobs then keep running on the hub and the next run
// re-attaches them.
func (r *runner) runBatch(ctx context.Context, wi, bi int) (waiting bool, err error) {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	b := &w.Batches[bi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return false, err
	}
	if b.Status == StatusPending {
		if len(b.Jobs) == 0 {
			maxCond := maxQuery(r.Quotas)
			for part, rg := range SplitIn(ids[b.Start:b.End], maxCond) {
				b.Jobs = append(b.Jobs, Job{ID: plan.JobID(r.p, wi, bi, part),
					Start: b.Start + rg[0], End: b.Start + rg[1], Counts: Counts{Targeted: rg[1] - rg[0]}})
			}
		}
		b.Status = StatusRunning
		if err := r.save(); err != nil {
			return false, err
		}
	}
	if pw.Action.TwinUpdate != nil && !b.Snapshotted {
		if err := r.snapshot(ctx, wi, bi); err != nil {
			return false, err
		}
	}
	var task *ahead
	defer func() { task.abandon() }()
	// The rate the hub actually processes this batch's devices at, to time the polls.
	var since time.Time
	sinceDone := 0
	for {
		running := 0
		for i := range b.Jobs {
			if j := &b.Jobs[i]; j.Created && !j.Collected {
				running++
			}
		}
		for i := range b.Jobs {
			j := &b.Jobs[i]
			if j.Created || running >= r.concurrentJobs() {
				continue
			}
			if err := r.startJob(ctx, wi, bi, j, &pw); err != nil {
				return false, err
			}
			if j.Created {
				running++
			}
		}
		pending := 0
		progress := Counts{}
		for i := range b.Jobs {
			j := &b.Jobs[i]
			if !j.Created || j.Collected {
				progress = progress.Add(j.Counts)
				continue
			}
			resp, err := r.Hub.GetJob(ctx, j.ID)
			if err != nil {
				return false, fmt.Errorf("job %s: %w", j.ID, err)
			}
			j.Status = resp.Status
			if resp.Terminal() {
				if err := r.collect(ctx, wi, bi, j, resp); err != nil {
					return false, err
				}
				progress = progress.Add(j.Counts)
				continue
			}
			if s := resp.DeviceJobStatistics; s != nil {
				progress.Succeeded += int(s.SucceededCount)
				progress.Failed += int(s.FailedCount)
				pending += int(s.PendingCount + s.RunningCount)
				if rest := j.End - j.Start - int(s.DeviceCount); rest > 0 {
					pending += rest
				}
			} else {
				pending += j.End - j.Start
			}
		}
		done := 0
		for i := range b.Jobs {
			if !b.Jobs[i].Collected {
				break
			}
			done++
		}
		if done == len(b.Jobs) {
			break
		}
		doneNow := progress.Succeeded + progress.Failed + progress.TimedOut + progress.Unreachable
		r.emit(Event{Type: EventBatchProgress, Wave: wi, Batch: bi, Batches: len(w.Batches), Devices: b.End - b.Start,
			Done: doneNow, Counts: &progress})
		observed := 0.0
		if since.IsZero() {
			since, sinceDone = r.now(), doneNow
		} else if dt := r.now().Sub(since).Seconds(); dt >= 0.5 {
			observed = float64(doneNow-sinceDone) / dt
		}
		if r.NoWait {
			return true, r.save()
		}
		if r.stopping() {
			return false, r.save()
		}
		// While the hub works, prepare what comes next, so the next job starts right after the gate.
		if task == nil {
			task = r.startAhead(ctx, wi, bi)
		} else if task.finished() {
			if err := r.applyAhead(task); err != nil {
				return false, err
			}
			task = nil
			continue
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-r.Stop:
		case <-r.Clock.After(r.pollInterval(pending, running, observed)):
		case <-task.doneChan():
		}
	}
	if task != nil {
		<-task.done
		if err := r.applyAhead(task); err != nil {
			return false, err
		}
		task = nil
	}
	b.Counts = Counts{}
	for _, j := range b.Jobs {
		b.Counts = b.Counts.Add(j.Counts)
	}
	w.Counts = Counts{}
	for i := 0; i <= bi; i++ {
		w.Counts = w.Counts.Add(w.Batches[i].Counts)
	}
	r.emit(Event{Type: EventBatchDone, Wave: wi, Batch: bi, Batches: len(w.Batches), Devices: b.End - b.Start,
		Done: b.End - b.Start, Counts: &b.Counts})
	v := Judge(w.Counts, pw.Success)
	if !v.Pass {
		return false, r.failWave(wi, fmt.Sprintf("after batch %d: %s", bi+1, v.Reason))
	}
	b.Status = StatusDone
	r.emit(Event{Type: EventGatePassed, Wave: wi, Batch: bi, Counts: &w.Counts, Reason: v.Reason})
	return false, r.save()
}

func (r *runner) concurrentJobs() int {
	if n := r.Quotas.ConcurrentJobs; n > 0 {
		return n
	}
	return 1
}

// ahead is work done in the background while a batch's jobs run: a later batch's snapshot, or, once
// the wave's batches are snapshotted, the next wave's devices (batch -1) or its first batch's snapshot. It only reads
// the hub; the runner stores its result when it finished.
type ahead struct {
	wave, batch int
	cancel      context.CancelFunc
	done        chan struct{}
	ids         []string
	priors      map[string][]byte
	err         error
}

func (a *ahead) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// doneChan is nil (never ready) for no task.
func (a *ahead) doneChan() <-chan struct{} {
	if a == nil {
		return nil
	}
	return a.done
}

// abandon stops an unfinished task and waits for it; its result is dropped.
func (a *ahead) abandon() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}

// startAhead starts the next piece of background work, or returns nil when there is none. A wave with
// bake or verify, and a next wave behind an approval or a closed schedule window, are not run ahead:
// the hub waits for them anyway, and a wave's devices are best resolved close to its start.
func (r *runner) startAhead(ctx context.Context, wi, bi int) *ahead {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	var a *ahead
	// Later batches of this wave first, in order: snapshots are the slowest preparation on a fast hub,
	// so they run back to back while jobs run.
	for j := bi + 1; j < len(w.Batches) && pw.Action.TwinUpdate != nil; j++ {
		if !w.Batches[j].Snapshotted {
			a = &ahead{wave: wi, batch: j}
			break
		}
	}
	switch {
	case a != nil:
	case wi+1 < len(r.st.Waves) && pw.Bake == 0 && pw.Verify == nil:
		ni := wi + 1
		nw, npw := &r.st.Waves[ni], r.p.Waves[ni]
		if nw.Status != StatusPending || npw.Approval {
			return nil
		}
		if open, _ := ScheduleOpen(r.p.Schedule, r.now()); !open {
			return nil
		}
		switch {
		case !nw.Resolved:
			a = &ahead{wave: ni, batch: -1}
		case npw.Action.TwinUpdate != nil && len(nw.Batches) > 0 && !nw.Batches[0].Snapshotted:
			a = &ahead{wave: ni, batch: 0}
		}
	}
	if a == nil {
		return nil
	}
	actx, cancel := context.WithCancel(ctx)
	a.cancel, a.done = cancel, make(chan struct{})
	if a.batch < 0 {
		q, taken, err := r.resolveSets(a.wave)
		if err != nil {
			a.err = err
			close(a.done)
			return a
		}
		pw := r.p.Waves[a.wave]
		go func() {
			defer close(a.done)
			a.ids, a.err = r.queryWave(actx, pw.Name, q, taken.has, pw.Percent)
		}()
		return a
	}
	ids, err := r.waveDevices(a.wave)
	if err != nil {
		a.err = err
		close(a.done)
		return a
	}
	b := r.st.Waves[a.wave].Batches[a.batch]
	ids = ids[b.Start:b.End]
	tu := r.p.Waves[a.wave].Action.TwinUpdate
	go func() {
		defer close(a.done)
		a.priors, a.err = r.capture(actx, ids, tu)
	}()
	return a
}

// applyAhead stores the result of a finished background task.
func (r *runner) applyAhead(a *ahead) error {
	if a.err != nil {
		return a.err
	}
	if a.batch < 0 {
		return r.storeResolved(a.wave, a.ids)
	}
	return r.storeSnapshot(a.wave, a.batch, a.priors)
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

// startJob creates job j through ensureJob, which records the intent first and re-attaches a job a
// previous run may have created without hearing back.
func (r *runner) startJob(ctx context.Context, wi, bi int, j *Job, pw *plan.Wave) error {
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	existed, err := r.ensureJob(ctx, j, func() *hubapi.JobRequest {
		return forwardJob(j.ID, InCondition(ids[j.Start:j.End]), pw)
	})
	if err != nil {
		return err
	}
	event := EventJobCreated
	if existed {
		event = EventJobAttached
	}
	r.emit(Event{Type: event, Wave: wi, Batch: bi, Job: j.ID, Devices: j.End - j.Start})
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

// snapshot captures, for every device of batch bi of wave wi, the prior value of each path the wave's
// twin update patches, and marks the batch snapshotted, in one transaction. Query results can lag the
// twins (by seconds, at worst minutes), so a twin changed by someone else just before its snapshot may
// be captured, and later restored, as it was before that change; twin reads do not lag. Where the hub's quotas
// make it faster it reads twins with paged `SELECT *` queries over deviceId IN [...] (100 twins a
// request); otherwise, as on S1 with its 20 queries a minute but 100 twin reads a second, and for the
// devices a lagging query did not return yet, it reads twins one by one, in parallel.
func (r *runner) snapshot(ctx context.Context, wi, bi int) error {
	b := r.st.Waves[wi].Batches[bi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return err
	}
	priors, err := r.capture(ctx, ids[b.Start:b.End], r.p.Waves[wi].Action.TwinUpdate)
	if err != nil {
		return err
	}
	return r.storeSnapshot(wi, bi, priors)
}

// capture reads the prior values of ids. It only reads the hub, so it may run in the background.
func (r *runner) capture(ctx context.Context, ids []string, tu *plan.TwinUpdate) (map[string][]byte, error) {
	priors := make(map[string][]byte, len(ids))
	if r.queryFasterThanReads() {
		if err := r.snapshotByQuery(ctx, ids, tu, priors); err != nil {
			return nil, err
		}
	}
	var missing []string
	for _, id := range ids {
		if _, ok := priors[id]; !ok {
			missing = append(missing, id)
		}
	}
	if err := r.snapshotByReads(ctx, missing, tu, priors); err != nil {
		return nil, err
	}
	return priors, nil
}

// storeSnapshot stores a batch's priors and marks it snapshotted, in one transaction.
func (r *runner) storeSnapshot(wi, bi int, priors map[string][]byte) error {
	b := &r.st.Waves[wi].Batches[bi]
	b.Snapshotted = true
	r.st.Updated = r.now().UTC()
	err := r.Store.Update(func(tx *Tx) error {
		for id, p := range priors {
			if err := tx.putSnapshotJSON(id, p); err != nil {
				return err
			}
		}
		return tx.PutState(r.st)
	})
	if err != nil {
		b.Snapshotted = false
		return err
	}
	r.emit(Event{Type: EventSnapshot, Wave: wi, Batch: bi, Devices: len(priors)})
	return nil
}

// encodedPrior is capturePrior in its stored form: a device's prior takes tens of bytes this way,
// against hundreds as a map, and a batch holds them all until they are stored.
func encodedPrior(tags, desired map[string]any, tu *plan.TwinUpdate) []byte {
	data, _ := json.Marshal(capturePrior(tags, desired, tu)) // strings and raw JSON only: cannot fail
	return data
}

// capturePrior records the prior value of every path the update patches. It descends into an object
// only where both the patch and the twin have an object (a twin patch merges objects), so restoring
// the recorded values undoes the patch exactly; a property the twin lacked is recorded as absent. (A
// twin never holds a JSON null: null in a patch removes the property, so absent and null agree.)
func capturePrior(tags, desired map[string]any, tu *plan.TwinUpdate) Prior {
	p := Prior{}
	if tu == nil {
		return p
	}
	walkPrior(p, "tags", tu.Tags, tags)
	walkPrior(p, "properties.desired", tu.Desired, desired)
	return p
}

func walkPrior(p Prior, prefix string, patch, cur map[string]any) {
	for k, pv := range patch {
		path := prefix + "." + k
		cv, ok := cur[k]
		if !ok {
			p[path] = PriorValue{Absent: true}
			continue
		}
		pm, pIsObj := pv.(map[string]any)
		cm, cIsObj := cv.(map[string]any)
		if pIsObj && cIsObj {
			walkPrior(p, path, pm, cm)
			continue
		}
		raw, err := json.Marshal(cv)
		if err != nil {
			raw = json.RawMessage("null")
		}
		p[path] = PriorValue{Value: raw}
	}
}

// restorePatch is the twin patch that puts back a device's prior values: each recorded value, and JSON
// null (which removes a property) for each that was absent.
func restorePatch(p Prior) *hubapi.Twin {
	t := &hubapi.Twin{}
	for path, v := range p {
		var val any = v.Value
		if v.Absent {
			val = nil
		}
		var root *map[string]any
		var rest string
		switch {
		case strings.HasPrefix(path, "tags."):
			if t.Tags == nil {
				t.Tags = map[string]any{}
			}
			root, rest = &t.Tags, strings.TrimPrefix(path, "tags.")
		case strings.HasPrefix(path, "properties.desired."):
			if t.Properties == nil {
				t.Properties = &hubapi.TwinProperties{Desired: map[string]any{}}
			}
			root, rest = &t.Properties.Desired, strings.TrimPrefix(path, "properties.desired.")
		default:
			continue
		}
		m := *root
		keys := strings.Split(rest, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = val
	}
	return t
}

// queryFasterThanReads compares the twins per second that paged queries and single twin reads give
// under the hub's quotas.
func (r *runner) queryFasterThanReads() bool {
	qpm, reads := r.Quotas.QueriesPerMinute, r.Quotas.TwinReadsPerSec
	if math.IsInf(qpm, 1) || qpm <= 0 {
		return true
	}
	return qpm/60*float64(pageSize(r.Quotas)) >= reads
}

// snapshotByQuery reads the patched properties of ids with paged queries. When every top-level key
// the patch touches is a plain identifier it projects just those (`SELECT deviceId, tags.k AS t0,
// properties.desired.k AS d0 ...`, a projection leaves out undefined properties, so a missing column
// is an absent property); otherwise it reads whole twins.
func (r *runner) snapshotByQuery(ctx context.Context, ids []string, tu *plan.TwinUpdate, priors map[string][]byte) error {
	tagKeys, desiredKeys := sortedKeys(tu.Tags), sortedKeys(tu.Desired)
	project := true
	for _, k := range append(append([]string{}, tagKeys...), desiredKeys...) {
		if !identifier(k) {
			project = false
		}
	}
	prefix := "SELECT * FROM devices WHERE "
	if project {
		var cols []string
		for i, k := range tagKeys {
			cols = append(cols, fmt.Sprintf("tags.%s AS t%d", k, i))
		}
		for i, k := range desiredKeys {
			cols = append(cols, fmt.Sprintf("properties.desired.%s AS d%d", k, i))
		}
		prefix = "SELECT deviceId, " + strings.Join(cols, ", ") + " FROM devices WHERE "
	}
	// Chunks are independent queries: a few run at once (the client paces them to the tier).
	chunks := SplitIn(ids, maxQuery(r.Quotas)-len(prefix))
	var mu sync.Mutex
	return forEach(ctx, chunks, min(4, len(chunks)), func(ctx context.Context, rg [2]int) error {
		pager := r.Hub.Query(ctx, prefix+InCondition(ids[rg[0]:rg[1]]), pageSize(r.Quotas))
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			for _, raw := range page {
				id, data, err := priorFromRow(raw, project, tagKeys, desiredKeys, tu)
				if err != nil {
					return err
				}
				mu.Lock()
				priors[id] = data
				mu.Unlock()
			}
		}
		return nil
	})
}

// priorFromRow reads one snapshot query row: a projection (see snapshotByQuery) or a whole twin.
func priorFromRow(raw json.RawMessage, project bool, tagKeys, desiredKeys []string, tu *plan.TwinUpdate) (string, []byte, error) {
	var row map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&row); err != nil {
		return "", nil, fmt.Errorf("snapshot: unexpected row %s", raw)
	}
	id, _ := row["deviceId"].(string)
	if id == "" {
		return "", nil, fmt.Errorf("snapshot: row without deviceId: %s", raw)
	}
	var tags, desired map[string]any
	if project {
		tags, desired = map[string]any{}, map[string]any{}
		for i, k := range tagKeys {
			if v, ok := row["t"+strconv.Itoa(i)]; ok {
				tags[k] = v
			}
		}
		for i, k := range desiredKeys {
			if v, ok := row["d"+strconv.Itoa(i)]; ok {
				desired[k] = v
			}
		}
	} else {
		tags, _ = row["tags"].(map[string]any)
		if props, ok := row["properties"].(map[string]any); ok {
			desired, _ = props["desired"].(map[string]any)
		}
	}
	return id, encodedPrior(tags, desired, tu), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// identifier reports whether s can be written bare in a query path.
func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// snapshotByReads reads the twins of ids one by one with parallel workers; a device that does not exist
// gets no prior (no job can change it).
func (r *runner) snapshotByReads(ctx context.Context, ids []string, tu *plan.TwinUpdate, priors map[string][]byte) error {
	if len(ids) == 0 {
		return nil
	}
	var mu sync.Mutex
	return forEach(ctx, ids, min(r.Workers, len(ids)), func(ctx context.Context, id string) error {
		twin, err := r.Hub.GetTwin(ctx, id)
		switch {
		case err == nil:
			var desired map[string]any
			if twin.Properties != nil {
				desired = twin.Properties.Desired
			}
			mu.Lock()
			priors[id] = encodedPrior(twin.Tags, desired, tu)
			mu.Unlock()
		case !hubapi.IsNotFound(err):
			return fmt.Errorf("snapshot %s: %w", id, err)
		}
		return nil
	})
}

// forEach runs work on every item, n items at a time (n must be at least 1 when there are items).
// The first error work returns cancels the context every work call gets and stops handing out items;
// once all calls have returned, forEach returns that error, or ctx's error when ctx ended first.
func forEach[T any](ctx context.Context, items []T, n int, work func(context.Context, T) error) error {
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
		next     = make(chan T)
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := work(cctx, it); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case next <- it:
		case <-cctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
