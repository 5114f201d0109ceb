package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
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
	// LockTimeout is how long Apply and Rollback wait for a rollout another process holds before
	// they give up with its *LockedError (0: they do not wait). A shared state's lease left by a
	// dead holder lapses within a minute, so a little over that rides out a lost runner.
	LockTimeout time.Duration
	// Force makes a rollback restore prior values even on twins someone changed since the rollout
	// wrote them (by default those devices are left alone and reported as conflicts).
	Force bool
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
	// ahead is a preparation a batch left running for a later step (see runBatch); nil: none.
	ahead *ahead
}

func newRunner(o Options, p *plan.Plan) *runner {
	if o.Clock == nil {
		o.Clock = hubapi.WallClock
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

// Apply runs plan p, holding the rollout's lock (a *LockedError names another holder): it starts the rollout or continues it from its state. It returns when the rollout
// is done, halted or rolled back, when it must wait and NoWait is set, or when Stop is closed (with
// ErrStopped). Errors are hub, state or plan-changed (*PlanChangedError) errors; the state stays
// consistent after any of them, and running Apply again continues.
func Apply(ctx context.Context, p *plan.Plan, o Options) (*Result, error) {
	r := newRunner(o, p)
	unlock, err := r.lock(ctx)
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
	unlock, err := r.lock(ctx)
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
		st.RequestRollback("rollback requested")
		if err := r.save(); err != nil {
			return nil, err
		}
	}
	return r.rollback(ctx)
}

// lock takes the rollout's lock, waiting up to LockTimeout while another process holds it.
func (r *runner) lock(ctx context.Context) (unlock func(), err error) {
	deadline := time.Now().Add(r.LockTimeout)
	for {
		unlock, err := r.Store.Lock(r.now())
		var held *LockedError
		if !errors.As(err, &held) || !time.Now().Before(deadline) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.Stop:
			return nil, ErrStopped
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
	}
}

// kindOf names a wave's action.
func kindOf(w plan.Wave) ActionKind {
	if w.Action.DirectMethod != nil {
		return KindDirectMethod
	}
	return KindTwinUpdate
}

// waveKind is a recorded wave's action; state written before waves recorded it has the rollout's.
func (st *State) waveKind(wi int) ActionKind {
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
		// The same plan (the hashes agree); state written before waves recorded these learns them.
		st.Waves[i].Gated = r.p.Waves[i].Approval
		st.Waves[i].Patch = r.p.Waves[i].Action.TwinUpdate
	}
	if st.PlanParts == nil {
		st.PlanParts = plan.Parts(r.p)
	}
	st.PlanFile, st.Hub, st.Hubs = r.p.File, r.HubName, HubRefs(r.p)
	r.st = st
	return nil
}

// start records a new rollout of the plan, created at created.
func (r *runner) start(created time.Time) error {
	r.st = NewState(r.p, r.HubName, created)
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

// commit saves the state and then emits events: the runner's half of a transition (see
// transition.go).
func (r *runner) commit(events []Event) error {
	if err := r.save(); err != nil {
		return err
	}
	r.emitAll(events)
	return nil
}

func (r *runner) emitAll(events []Event) {
	for _, e := range events {
		r.emit(e)
	}
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

// sleep waits d or until ctx ends or Stop closes. A run whose shared lease is lost while it waits
// (a bake, a window, an approval) stops with ErrLockLost.
func (r *runner) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.Store.lost():
		return ErrLockLost
	case <-r.Stop:
		return nil
	case <-r.Clock.After(d):
		return nil
	}
}

// approval reads wave's approval; a state error reads as none, and the gate stays closed.
func (r *runner) approval(wave string) (a Approval, ok bool) {
	approvals, _ := Approvals(r.Store)
	a, ok = approvals[wave]
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
	defer r.dropAhead()
	r.emit(Event{Type: EventStarted, Wave: -1, Waves: len(r.st.Waves)})
	announced := Step{Kind: "-"}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step := NextWith(r.p, r.st, r.signals(), r.now())
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
				if err := r.commit(r.st.Finish()); err != nil {
					return nil, err
				}
			} else {
				r.emit(Event{Type: EventDone, Wave: -1})
			}
			return r.result(step), nil
		case StepHalted, StepRolledBack:
			return r.result(step), nil
		case StepAccept:
			if a := pendingAcceptance(r.Store, r.st); a != nil {
				err = r.commit(r.st.Accept(*a, r.now()))
			}
		case StepRollback:
			r.dropAhead() // what it prepares is for batches that will not run
			return r.rollback(ctx)
		case StepWaitApproval, StepWaitSchedule, StepWaitBake, StepPaused, StepWaitRetry:
			reason := map[StepKind]string{StepWaitApproval: "approval", StepWaitSchedule: "schedule", StepWaitBake: "bake",
				StepPaused: "paused", StepWaitRetry: "retry"}[step.Kind]
			d := r.ApprovalPoll
			if !step.Until.IsZero() {
				d = step.Until.Sub(r.now())
			}
			if res, err := r.wait(ctx, step, reason, d, &announced); res != nil || err != nil {
				return res, err
			}
		case StepResolve:
			err = r.resolve(ctx, step.Wave)
		case StepBatch, StepRetry:
			var waiting bool
			if step.Kind == StepBatch {
				waiting, err = r.runBatch(ctx, step)
			} else {
				waiting, err = r.runRetry(ctx, step)
			}
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
				v := r.p.Waves[step.Wave].Verify
				step.Until = r.st.Waves[step.Wave].BakeStart.Add(v.Within + v.Hold)
				if res, err := r.wait(ctx, step, "verify", r.verifyPoll(step.Wave), &announced); res != nil || err != nil {
					return res, err
				}
			}
		case StepFinishWave:
			err = r.commit(r.st.FinishWave(step.Wave, r.now()))
		}
		if err != nil {
			return nil, err
		}
	}
}

// wait waits at step for reason: it records and announces the wait once (announced is the last wait
// announced), then with NoWait returns the waiting result, else sleeps d and returns nil, nil.
func (r *runner) wait(ctx context.Context, step Step, reason string, d time.Duration, announced *Step) (*Result, error) {
	if step != *announced {
		if err := r.waiting(step, reason); err != nil {
			return nil, err
		}
		*announced = step
	}
	if r.NoWait {
		res := r.result(step)
		res.Waiting = true
		return res, nil
	}
	return nil, r.sleep(ctx, d)
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
