package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// Options configure Apply and Rollback.
type Options struct {
	Hub   Hub
	Store *Store
	// Quotas are the hub's limits; the engine sizes job concurrency, query pages and polling to them.
	// The zero value means unlimited.
	Quotas hubapi.Quotas
	// Clock is the time source (nil: the wall clock). Tests pass a fake so bakes and windows take no
	// wall time.
	Clock hubapi.Clock
	// Observer receives events (nil: none).
	Observer Observer
	// NoWait makes the run advance as far as it can now and return instead of waiting.
	NoWait bool
	// Stop, when closed, makes the run stop at the next safe point (the first Ctrl-C). Cancelling ctx
	// aborts at once (the second); state stays consistent either way.
	Stop <-chan struct{}
	// PollMin bounds how often a job or an approval is polled (0: derived from the quotas).
	PollMin time.Duration
	// VerifyPoll is the interval between verify reads (0: derived from the quotas).
	VerifyPoll time.Duration
	// ApprovalPoll is how often a blocking run looks for an approval (0: 2 s).
	ApprovalPoll time.Duration
	// Workers is the number of parallel twin restores in a rollback (0: 16).
	Workers int
	// HubName names the hub for people, as the caller reaches it (a host name, or "emulated:FLEET");
	// it is recorded in the state so that status can say how to continue.
	HubName string
}

// Result is where a run of Apply or Rollback left the rollout.
type Result struct {
	Status  Status    // the rollout's status when the run returned
	Step    StepKind  // the step the run stopped at
	Waiting bool      // with NoWait: stopped at a wait (approval, schedule, bake, verify)
	Stopped bool      // stopped at a safe point because Stop was closed
	Reason  string    // why the rollout halted or rolled back
	Until   time.Time // the end of the wait, when the step waits for a time (bake, window, verify)
	Wave    int       // the wave of a step that has one
	// WaveName names Wave.
	WaveName string
	// Progress is the last progress of the running batch, when a NoWait run left it running.
	Progress *Event
}

// PlanChangedError is returned when the plan's hash differs from the one the rollout started with
// and the rollout already created a job; before that, an edited plan starts the rollout over.
type PlanChangedError struct {
	Name, Was, Now string
	Changes        []string // what changed: "wave eu changed", "schedule changed" (see plan.Changes)
	Known          bool     // the state recorded the plan's parts, so Changes is complete
}

func (e *PlanChangedError) Error() string {
	what := ""
	switch {
	case len(e.Changes) > 0 && e.Known:
		what = ": " + strings.Join(e.Changes, ", ")
	case !e.Known:
		what = " (what changed is not recorded for rollouts started before this version)"
	}
	return fmt.Sprintf("plan %s changed since its rollout created its first job (plan hash %.12s, was %.12s)%s; "+
		"restore the original plan to continue, run `rollout rollback %s` to undo what was applied, "+
		"or give the edited plan a new name to start a new rollout", e.Name, e.Now, e.Was, what, e.Name)
}

// ErrStopped is returned with a Result when the run stopped at a safe point on request.
var ErrStopped = errors.New("stopped at a safe point; run again to continue")

type runner struct {
	Options
	p   *plan.Plan // nil for an on-demand rollback
	st  *State
	now func() time.Time
	// devices caches resolved wave devices.
	devices map[int][]string
	// progress is the last batch progress emitted, for the Result of a run that leaves jobs running.
	progress *Event
}

func newRunner(o Options, p *plan.Plan) *runner {
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
	if o.Observer == nil {
		o.Observer = ObserverFunc(func(Event) {})
	}
	if o.Quotas.Tier == "" {
		o.Quotas, _ = hubapi.TierQuotas("unlimited", 1)
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.ApprovalPoll <= 0 {
		o.ApprovalPoll = 2 * time.Second
	}
	r := &runner{Options: o, p: p, devices: map[int][]string{}}
	r.now = func() time.Time { return r.Clock.Now() }
	return r
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Apply runs plan p, holding the rollout's lock (a *LockedError names another holder): it starts the rollout or continues it from its state. It returns when the rollout
// is done, halted or rolled back, when it must wait and NoWait is set, or when Stop is closed (with
// ErrStopped). Errors are hub, state or plan-changed (*PlanChangedError) errors; the state stays
// consistent after any of them, and running Apply again continues.
func Apply(ctx context.Context, p *plan.Plan, o Options) (*Result, error) {
	r := newRunner(o, p)
	unlock, err := r.Store.Lock(r.now())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.load(); err != nil {
		return nil, err
	}
	return r.loop(ctx)
}

// Rollback rolls back what the rollout in o.Store applied, newest batch first, and records it: twin
// updates are restored to each device's captured prior values, direct methods are compensated with the
// plan's rollback method on the devices the rollout reached. It needs no plan: the state holds what it
// needs. A rollback that was interrupted continues where it was.
func Rollback(ctx context.Context, o Options) (*Result, error) {
	r := newRunner(o, nil)
	unlock, err := r.Store.Lock(r.now())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := r.Store.Load()
	if err != nil {
		return nil, err
	}
	r.st = st
	if st.Status != StatusRolledBack {
		st.Requested = true
		if st.Reason == "" {
			st.Reason = "rollback requested"
		}
		if err := r.save(); err != nil {
			return nil, err
		}
	}
	return r.rollback(ctx)
}

// kindOf names a wave's action.
func kindOf(w plan.Wave) string {
	if w.Action.DirectMethod != nil {
		return "directMethod"
	}
	return "twinUpdate"
}

// waveKind is a recorded wave's action; state written before waves recorded it has the rollout's.
func (st *State) waveKind(wi int) string {
	if k := st.Waves[wi].Kind; k != "" {
		return k
	}
	return st.Kind
}

func (r *runner) load() error {
	st, err := r.Store.Load()
	switch {
	case errors.Is(err, ErrNoState):
		return r.start(r.now().UTC())
	case err != nil:
		return err
	}
	if st.PlanHash != r.p.Hash {
		changes := plan.Changes(st.PlanParts, plan.Parts(r.p))
		if st.Status == StatusRunning && !st.anyJob() {
			// Nothing reached the hub yet: the edited plan starts the rollout over.
			r.st = st
			r.emit(Event{Type: EventReplanned, Wave: -1, Reason: strings.Join(changes, ", ")})
			return r.start(st.Created)
		}
		return &PlanChangedError{Name: st.Name, Was: st.PlanHash, Now: r.p.Hash, Changes: changes, Known: st.PlanParts != nil}
	}
	if len(st.Waves) != len(r.p.Waves) {
		return fmt.Errorf("state of rollout %s has %d waves, the plan %d", st.Name, len(st.Waves), len(r.p.Waves))
	}
	for i := range st.Waves {
		// The same plan (the hashes agree); state written before waves recorded their gate learns it.
		st.Waves[i].Gated = r.p.Waves[i].Approval
	}
	if st.PlanParts == nil {
		st.PlanParts = plan.Parts(r.p)
	}
	st.PlanFile, st.Hub = r.p.File, r.HubName
	r.st = st
	return nil
}

// start records a new rollout of the plan, created at created.
func (r *runner) start(created time.Time) error {
	st := &State{Name: r.p.Name, PlanHash: r.p.Hash, PlanParts: plan.Parts(r.p), PlanFile: r.p.File, Hub: r.HubName,
		Kind: kindOf(r.p.Waves[0]), Status: StatusRunning, Created: created}
	if m := r.p.Rollback.DirectMethod; m != nil {
		st.RollbackMethod = m
	}
	for _, w := range r.p.Waves {
		st.Waves = append(st.Waves, Wave{Name: w.Name, Kind: kindOf(w), Status: StatusPending, Gated: w.Approval})
	}
	r.st = st
	return r.save()
}

// anyJob reports whether the rollout recorded the intent of any job: from then on the hub may hold
// what the plan did, and the plan must stay the one it started with.
func (st *State) anyJob() bool {
	for _, w := range st.Waves {
		for _, b := range w.Batches {
			for _, j := range b.Jobs {
				if j.Intent || j.Created {
					return true
				}
			}
		}
	}
	return st.Rollback != nil
}

func (r *runner) save() error {
	r.st.Updated = r.now().UTC()
	if r.st.Status != StatusRunning {
		r.st.Waiting = nil // a rollout that is over or rolling back waits for nothing
	}
	return r.Store.Update(func(tx *Tx) error { return tx.PutState(r.st) })
}

func (r *runner) emit(e Event) {
	e.Time = r.now().UTC()
	e.Rollout = r.st.Name
	if e.Wave >= 0 && e.Wave < len(r.st.Waves) && e.WaveName == "" {
		e.WaveName = r.st.Waves[e.Wave].Name
	}
	if e.Type == EventBatchProgress {
		r.progress = &e
	}
	r.Observer.Event(e)
}

func (r *runner) stopping() bool {
	if r.Stop == nil {
		return false
	}
	select {
	case <-r.Stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until ctx ends or Stop closes; it reports whether the full time passed.
func (r *runner) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.Stop:
		return nil
	case <-r.Clock.After(d):
		return nil
	}
}

// approved reports whether wave's gate is released: by an approval given for this plan (one given
// for another version of the plan does not count).
func (r *runner) approved(wave string) bool {
	a, ok := r.approval(wave)
	return ok && (a.PlanHash == "" || a.PlanHash == r.p.Hash)
}

// approval reads wave's approval; a state error reads as none, and the gate stays closed.
func (r *runner) approval(wave string) (a Approval, ok bool) {
	_ = r.Store.View(func(tx *Tx) error {
		a, ok, _ = tx.Approval(wave)
		return nil
	})
	return a, ok
}

func (r *runner) result(step Step) *Result {
	res := &Result{Status: r.st.Status, Step: step.Kind, Reason: r.st.Reason, Until: step.Until, Wave: step.Wave}
	if step.Wave >= 0 && step.Wave < len(r.st.Waves) {
		res.WaveName = r.st.Waves[step.Wave].Name
	}
	return res
}

func (r *runner) loop(ctx context.Context) (*Result, error) {
	r.emit(Event{Type: EventStarted, Wave: -1, Waves: len(r.st.Waves)})
	announced := Step{Kind: "-"}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step := Next(r.p, r.st, r.approved, r.now())
		if r.stopping() && step.Kind != StepRollback {
			r.emit(Event{Type: EventStopped, Wave: -1})
			res := r.result(step)
			res.Stopped = true
			return res, ErrStopped
		}
		var err error
		switch step.Kind {
		case StepDone:
			if r.st.Status != StatusDone {
				r.st.Status = StatusDone
				if err := r.save(); err != nil {
					return nil, err
				}
			}
			r.emit(Event{Type: EventDone, Wave: -1})
			return r.result(step), nil
		case StepHalted, StepRolledBack:
			return r.result(step), nil
		case StepRollback:
			return r.rollback(ctx)
		case StepWaitApproval, StepWaitSchedule, StepWaitBake:
			if step != announced {
				reason := map[StepKind]string{StepWaitApproval: "approval", StepWaitSchedule: "schedule", StepWaitBake: "bake"}[step.Kind]
				if err := r.waiting(step, reason); err != nil {
					return nil, err
				}
				announced = step
			}
			if r.NoWait {
				res := r.result(step)
				res.Waiting = true
				return res, nil
			}
			d := r.ApprovalPoll
			if !step.Until.IsZero() {
				d = step.Until.Sub(r.now())
			}
			err = r.sleep(ctx, d)
		case StepResolve:
			r.st.Waiting = nil
			err = r.resolve(ctx, step.Wave)
		case StepBatch:
			var waiting bool
			waiting, err = r.runBatch(ctx, step.Wave, step.Batch)
			if err == nil && waiting && r.NoWait {
				// Jobs are running on the hub: the rollout progresses normally without us.
				res := r.result(step)
				res.Progress = r.progress
				return res, nil
			}
		case StepWaveGate:
			err = r.waveGate(step.Wave)
		case StepVerify:
			var waiting bool
			waiting, err = r.verify(ctx, step.Wave)
			if err == nil && waiting {
				step.Until = r.st.Waves[step.Wave].BakeStart.Add(r.p.Waves[step.Wave].Verify.Within)
				if step != announced {
					if err := r.waiting(step, "verify"); err != nil {
						return nil, err
					}
					announced = step
				}
				if r.NoWait {
					res := r.result(step)
					res.Waiting = true
					return res, nil
				}
				err = r.sleep(ctx, r.verifyPoll(step.Wave))
			}
		case StepFinishWave:
			r.st.Waiting = nil
			w := &r.st.Waves[step.Wave]
			w.Status, w.Done = StatusDone, r.now().UTC()
			err = r.save()
			r.emit(Event{Type: EventWaveDone, Wave: step.Wave, Devices: w.DeviceCount, Counts: &w.Counts})
		}
		if err != nil {
			return nil, err
		}
	}
}

// waiting records that the rollout waits at step, for reason, so that status can say so from the
// state alone, and announces it.
func (r *runner) waiting(step Step, reason string) error {
	w := &Waiting{Reason: reason, Wave: r.st.Waves[step.Wave].Name, Until: step.Until.UTC(), Since: r.now().UTC()}
	if reason == "verify" {
		w.MinRate = r.p.Waves[step.Wave].Verify.MinRate
	}
	r.st.Waiting = w
	if err := r.save(); err != nil {
		return err
	}
	r.emit(Event{Type: EventWaiting, Wave: step.Wave, Reason: reason, Until: step.Until})
	return nil
}

// pageSize is the query page size to ask of a hub with quotas q: its own, or IoT Hub's default when
// q leaves it zero.
func pageSize(q hubapi.Quotas) int {
	if n := q.MaxPageSize; n > 0 {
		return n
	}
	return hubapi.MaxPageSize
}

// maxQuery is the longest query a hub with quotas q accepts: its own limit, or IoT Hub's default
// when q leaves it zero.
func maxQuery(q hubapi.Quotas) int {
	if n := q.MaxQueryLength; n > 0 {
		return n
	}
	return hubapi.MaxQueryLength
}

// resolve starts a wave: it selects the wave's devices once and stores them (fleet AND target, minus
// every device an earlier wave took, then the wave's stable percent sample), unless that ran ahead.
func (r *runner) resolve(ctx context.Context, wi int) error {
	w := &r.st.Waves[wi]
	if !w.Resolved {
		if err := r.resolveDevices(ctx, wi); err != nil {
			return err
		}
	}
	w.Status, w.Started = StatusRunning, r.now().UTC()
	if err := r.save(); err != nil {
		return err
	}
	if r.p.Waves[wi].Approval {
		if a, ok := r.approval(w.Name); ok {
			r.emit(Event{Type: EventApproved, Wave: wi, By: a.By, At: a.At, Reason: a.Reason})
		}
	}
	r.emit(Event{Type: EventWaveStarted, Wave: wi, Devices: w.DeviceCount, Batches: len(w.Batches)})
	return nil
}

// resolveDevices resolves and stores a wave's devices and batches without starting the wave.
func (r *runner) resolveDevices(ctx context.Context, wi int) error {
	q, taken, err := r.resolveSets(wi)
	if err != nil {
		return err
	}
	pw := r.p.Waves[wi]
	ids, err := r.queryWave(ctx, pw.Name, q, taken.has, pw.Percent)
	if err != nil {
		return err
	}
	return r.storeResolved(wi, ids)
}

// taken holds the sorted device lists of earlier waves; it answers membership by binary search, so
// resolving a wave allocates nothing per device already taken.
type taken [][]string

func (t taken) has(id string) bool {
	for _, ids := range t {
		if i := sort.SearchStrings(ids, id); i < len(ids) && ids[i] == id {
			return true
		}
	}
	return false
}

// resolveSets gives the query that selects a wave's candidates (fleet AND target) and the devices
// earlier waves took.
func (r *runner) resolveSets(wi int) (string, taken, error) {
	// A wave selects fleet AND target AND NOT (earlier waves' targets), the plan's documented meaning
	// of disjoint waves and what `rollout plan` previews; it also spares a "*" wave reading the whole
	// fleet. plan.Condition guards the NOT against IoT Hub's three-valued logic, so a device lacking a
	// property an earlier target tests is still selected. Every earlier wave's stored devices are
	// subtracted as well (samples, which no condition can name, and any device a lagging query
	// showed differently), so no device is ever taken twice.
	q := "SELECT deviceId FROM devices"
	if c := query.Format(r.p.Condition(wi)); c != "*" {
		q += " WHERE " + c
	}
	var t taken
	for i := 0; i < wi; i++ {
		ids, err := r.waveDevices(i)
		if err != nil {
			return "", nil, err
		}
		t = append(t, ids)
	}
	return q, t, nil
}

// queryWave runs q and keeps the devices not taken that fall in the wave's sample, sorted. It only
// reads the hub and its arguments, so it may run in the background.
func (r *runner) queryWave(ctx context.Context, wave, q string, isTaken func(string) bool, percent float64) ([]string, error) {
	var ids []string
	pager := r.Hub.Query(ctx, q, pageSize(r.Quotas))
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("resolve wave %s: %w", wave, err)
		}
		for _, raw := range page {
			id, err := rowID(raw)
			if err != nil {
				return nil, fmt.Errorf("resolve wave %s: %w", wave, err)
			}
			if !isTaken(id) && InSample(r.p.Name, id, percent) {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return slices.Compact(ids), nil
}

// storeResolved stores a wave's devices and splits them into batches.
func (r *runner) storeResolved(wi int, ids []string) error {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	w.Resolved, w.DeviceCount = true, len(ids)
	w.Batches = nil
	for _, rg := range BatchRanges(len(ids), pw.Batch) {
		w.Batches = append(w.Batches, Batch{Start: rg[0], End: rg[1], Status: StatusPending})
	}
	r.devices[wi] = ids
	return r.Store.Update(func(tx *Tx) error {
		if err := tx.PutDevices(wi, ids); err != nil {
			return err
		}
		w.Counts = Counts{}
		r.st.Updated = r.now().UTC()
		return tx.PutState(r.st)
	})
}

func (r *runner) waveDevices(wi int) ([]string, error) {
	if ids, ok := r.devices[wi]; ok {
		return ids, nil
	}
	var ids []string
	err := r.Store.View(func(tx *Tx) error {
		var err error
		ids, err = tx.Devices(wi)
		return err
	})
	if err == nil {
		r.devices[wi] = ids
	}
	return ids, err
}

// failWave records a failed gate and decides, per the plan, between halt and rollback.
func (r *runner) failWave(wi int, reason string) error {
	return r.failWaveAs(wi, reason, r.p.OnFailure)
}

// failWaveAs records a failed gate and halts or rolls back as onFailure says.
func (r *runner) failWaveAs(wi int, reason string, onFailure plan.FailurePolicy) error {
	w := &r.st.Waves[wi]
	w.Status = StatusFailed
	r.st.Reason = fmt.Sprintf("wave %s: %s", w.Name, reason)
	r.emit(Event{Type: EventGateFailed, Wave: wi, Reason: reason, Counts: &w.Counts})
	if onFailure == plan.Halt {
		r.st.Status = StatusHalted
		if err := r.save(); err != nil {
			return err
		}
		r.emit(Event{Type: EventHalted, Wave: wi, Reason: r.st.Reason})
		return nil
	}
	r.st.Status = StatusRollingBack
	return r.save()
}

func (r *runner) waveGate(wi int) error {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	v := JudgeWave(pw, query.Format(r.p.Condition(wi)), w.Counts)
	if !v.Pass {
		onFailure := r.p.OnFailure
		if v.Halt {
			onFailure = plan.Halt
		}
		return r.failWaveAs(wi, v.Reason, onFailure)
	}
	r.emit(Event{Type: EventGatePassed, Wave: wi, Batch: -1, Counts: &w.Counts, Reason: v.Reason})
	w.Status, w.BakeStart = StatusBaking, r.now().UTC()
	if w.DeviceCount == 0 {
		w.Status, w.Done = StatusDone, w.BakeStart
		defer r.emit(Event{Type: EventWaveDone, Wave: wi})
	}
	return r.save()
}

func (r *runner) verifyPoll(wi int) time.Duration {
	if r.VerifyPoll > 0 {
		return r.VerifyPoll
	}
	// Ten reads within the verify window, between 200ms and 5s apart; and since one read costs a query
	// per chunk of the wave's device list, at most a quarter of the hub's query budget.
	d := r.p.Waves[wi].Verify.Within / 10
	d = max(200*time.Millisecond, min(d, 5*time.Second))
	chunks := float64(r.st.Waves[wi].DeviceCount)/500 + 1
	if qpm := r.Quotas.QueriesPerMinute; qpm > 0 && !math.IsInf(qpm, 1) {
		if need := time.Duration(chunks * 4 * 60 / qpm * float64(time.Second)); need > d {
			d = need
		}
	}
	return d
}

// verify reads the share of a wave's devices that satisfy the verify condition, one COUNT query per
// chunk of the device list, and judges it.
func (r *runner) verify(ctx context.Context, wi int) (waiting bool, err error) {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return false, err
	}
	prefix := "SELECT COUNT() AS n FROM devices WHERE (" + pw.Verify.Condition + ") AND "
	matching := 0
	for _, rg := range SplitIn(ids, maxQuery(r.Quotas)-len(prefix)) {
		pager := r.Hub.Query(ctx, prefix+InCondition(ids[rg[0]:rg[1]]), pageSize(r.Quotas))
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return false, fmt.Errorf("verify wave %s: %w", w.Name, err)
			}
			for _, raw := range page {
				n, err := countRow(raw)
				if err != nil {
					return false, fmt.Errorf("verify wave %s: %w", w.Name, err)
				}
				matching += n
			}
		}
	}
	w.VerifyReads++
	w.VerifyRate = 1
	if len(ids) > 0 {
		w.VerifyRate = float64(matching) / float64(len(ids))
	}
	r.emit(Event{Type: EventVerify, Wave: wi, Rate: w.VerifyRate, Done: matching, Devices: len(ids)})
	switch JudgeVerify(pw.Verify, matching, len(ids), w.VerifyReads, w.BakeStart, r.now()) {
	case VerifyPass:
		w.VerifyOK = true
		return false, r.save()
	case VerifyFail:
		missing, err := r.unverified(ctx, wi, ids)
		if err != nil {
			return false, err
		}
		return false, r.failWave(wi, fmt.Sprintf("verify: %s of devices satisfy %q after %s, below minRate %s; not satisfied: %s",
			pct(w.VerifyRate), pw.Verify.Condition, pw.Verify.Within, pct(pw.Verify.MinRate), sample(missing, 5)))
	}
	return true, r.save()
}

// unverified finds and stores the devices among ids (sorted) that do not satisfy wave wi's verify
// condition, for the report: the wave's devices less those a query of the condition returns (a NOT
// of the condition would miss devices that lack its properties).
func (r *runner) unverified(ctx context.Context, wi int, ids []string) ([]string, error) {
	cond := r.p.Waves[wi].Verify.Condition
	prefix := "SELECT deviceId FROM devices WHERE (" + cond + ") AND "
	satisfied := map[string]bool{}
	for _, rg := range SplitIn(ids, maxQuery(r.Quotas)-len(prefix)) {
		pager := r.Hub.Query(ctx, prefix+InCondition(ids[rg[0]:rg[1]]), pageSize(r.Quotas))
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("verify wave %s: %w", r.st.Waves[wi].Name, err)
			}
			for _, raw := range page {
				id, err := rowID(raw)
				if err != nil {
					return nil, fmt.Errorf("verify wave %s: %w", r.st.Waves[wi].Name, err)
				}
				satisfied[id] = true
			}
		}
	}
	missing := []string{}
	for _, id := range ids {
		if !satisfied[id] {
			missing = append(missing, id)
		}
	}
	return missing, r.Store.Update(func(tx *Tx) error { return tx.PutUnverified(wi, missing) })
}

// sample lists up to n of ids, and how many more there are.
func sample(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more (all in the report)", strings.Join(ids[:n], ", "), len(ids)-n)
}

// countRow reads the single number of an aggregate row such as {"n": 5}.
func countRow(raw json.RawMessage) (int, error) {
	var row map[string]json.Number
	if err := json.Unmarshal(raw, &row); err != nil || len(row) != 1 {
		return 0, fmt.Errorf("unexpected count row %s", raw)
	}
	for _, v := range row {
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("unexpected count row %s", raw)
		}
		return int(n), nil
	}
	return 0, nil
}
