package engine

import (
	"fmt"
	"math"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/internal/stablehash"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// This file holds the engine's decisions as pure functions: no I/O, and the time is always an
// argument. The runner does the I/O around them.

// BatchRanges splits n devices into batches of sizes b.Size, b.Size·Growth, b.Size·Growth², ... (each
// rounded down, at least 1); the last batch takes what is left. It returns [start, end) index ranges.
func BatchRanges(n int, b plan.Batch) [][2]int {
	if n <= 0 {
		return nil
	}
	size := float64(b.Size)
	if size < 1 {
		size = float64(n)
	}
	growth := b.Growth
	if growth < 1 {
		growth = 1
	}
	var out [][2]int
	for start := 0; start < n; {
		k := int(math.Min(size, float64(n-start)))
		if k < 1 {
			k = 1
		}
		out = append(out, [2]int{start, start + k})
		start += k
		size = math.Floor(size * growth)
		if size > float64(n) {
			size = float64(n)
		}
	}
	return out
}

// InSample reports whether device id belongs to the stable percent sample of the rollout named name. The
// decision hashes the rollout name and the device id, so every run, and every machine, selects the same
// devices, and two rollouts sample independently.
func InSample(name, id string, percent float64) bool {
	if percent >= 100 {
		return true
	}
	if percent <= 0 {
		return false
	}
	// The top 53 bits of the stable hash give a fraction in [0, 1).
	x := stablehash.New().String(name).Byte(0).String(id).Sum()
	f := float64(x>>11) / (1 << 53)
	return f < percent/100
}

// JudgeBudget applies the rollout's error budget b (nil: none) to the outcomes of every wave so far,
// c: failures (failed, timed out, method errors) over the rollout against maxFailures at any count,
// and their share of the devices targeted so far against maxFailureRate once minDevices were
// targeted. A tripped budget acts as a failed gate.
func JudgeBudget(b *plan.Budget, c Counts) Verdict {
	if b == nil {
		return Verdict{Pass: true}
	}
	failures := c.Failed + c.TimedOut
	if b.MaxFailures >= 0 && failures > b.MaxFailures {
		return Verdict{Judged: true, Reason: fmt.Sprintf("budget: %s failed or timed out over the rollout, more than maxFailures %d",
			plural(failures, "device"), b.MaxFailures)}
	}
	if b.RateSet && c.Targeted > 0 && c.Targeted >= b.MinDevices {
		if rate := float64(failures) / float64(c.Targeted); rate > b.MaxFailureRate+1e-9 {
			return Verdict{Judged: true, Reason: fmt.Sprintf("budget: %s of the %s targeted so far failed or timed out, more than maxFailureRate %s",
				pct(rate), plural(c.Targeted, "device"), pct(b.MaxFailureRate))}
		}
	}
	return Verdict{Pass: true, Judged: true}
}

// Verdict is the judgement of a gate.
type Verdict struct {
	Pass   bool
	Judged bool   // false when the rate was not judged because fewer than minDevices were targeted
	Halt   bool   // a failure that halts whatever onFailure says: nothing was changed that failed
	Reason string // why it failed (or why the rate was not judged)
}

// Judge applies the success gate to the outcomes of a wave's batches so far. maxFailures counts failed
// and timed out devices (unreachable ones never received the change, so they only lower the success
// rate), and is judged at any count; the success rate (succeeded / targeted) is judged only once at
// least minDevices devices were targeted, so one unlucky device in a first batch does not fail a wave.
// The wave's end gate is JudgeWave.
func Judge(c Counts, s plan.Success) Verdict {
	if v, failed := judgeFailures(c, s, false); failed {
		return v
	}
	if c.Targeted == 0 || c.Targeted < s.MinDevices {
		return Verdict{Pass: true, Reason: fmt.Sprintf("success rate not judged yet: %s targeted, minDevices is %d",
			plural(c.Targeted, "device"), s.MinDevices)}
	}
	return judgeRate(c, s)
}

// JudgeWave is the gate at the end of wave w, over all its devices. A wave that selected no device
// fails it unless it allows that (an empty canary would let every later wave through unjudged), and
// halts the rollout: nothing was applied that failed. A wave of fewer devices than minDevices is
// judged on all of them, so each must succeed as far as the rate demands; minDevices only defers the
// rate while a wave's first batches run.
func JudgeWave(w plan.Wave, condition string, c Counts) Verdict {
	if c.Targeted == 0 {
		if w.AllowEmpty {
			return Verdict{Pass: true, Reason: "the wave selects no device (allowEmpty)"}
		}
		return Verdict{Halt: true, Judged: true, Reason: fmt.Sprintf(
			"selects no device (condition %s); fix the plan's target or fleet, or set allowEmpty: true on the wave if that is expected",
			condition)}
	}
	if v, failed := judgeFailures(c, w.Success, true); failed {
		return v
	}
	return judgeRate(c, w.Success)
}

// judgeFailures applies the gate's count limits: maxFailures at any count, maxUnreachable as a count
// at any count and as a share once minDevices are targeted or, at a wave's end (final), always.
func judgeFailures(c Counts, s plan.Success, final bool) (Verdict, bool) {
	failures := c.Failed + c.TimedOut
	if s.MaxFailures >= 0 && failures > s.MaxFailures {
		return Verdict{Judged: true, Reason: fmt.Sprintf("%s failed or timed out, more than maxFailures %d",
			plural(failures, "device"), s.MaxFailures)}, true
	}
	if l := s.MaxUnreachable; l != nil && l.Exceeded(c.Unreachable, c.Targeted) && (!l.Ratio || final || c.Targeted >= s.MinDevices) {
		return Verdict{Judged: true, Reason: fmt.Sprintf("%s unreachable, more than maxUnreachable %s",
			plural(c.Unreachable, "device"), l)}, true
	}
	return Verdict{}, false
}

func judgeRate(c Counts, s plan.Success) Verdict {
	rate := float64(c.Succeeded) / float64(c.Targeted)
	if rate+1e-9 < s.MinSuccessRate {
		return Verdict{Judged: true, Reason: fmt.Sprintf("success rate %s (%d of %d) is below minSuccessRate %s",
			pct(rate), c.Succeeded, c.Targeted, pct(s.MinSuccessRate))}
	}
	return Verdict{Pass: true, Judged: true}
}

// plural counts n of a regular noun for a person: "1 device", "2 devices".
func plural(n int, noun string) string {
	if n != 1 {
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}

func pct(f float64) string { return plan.FormatRate(f) }

// ScheduleOpen reports whether a wave may start at now under schedule s (nil: always). When it may
// not, next is the earliest time at or after now when it may (zero if never).
func ScheduleOpen(s *plan.Schedule, now time.Time) (open bool, next time.Time) {
	if s == nil {
		return true, time.Time{}
	}
	if !s.NotBefore.IsZero() && now.Before(s.NotBefore) {
		if open, next := ScheduleOpen(&plan.Schedule{Windows: s.Windows}, s.NotBefore); !open {
			return false, next
		}
		return false, s.NotBefore
	}
	if len(s.Windows) == 0 {
		return true, time.Time{}
	}
	for _, w := range s.Windows {
		if inWindow(w, now) {
			return true, time.Time{}
		}
	}
	for _, w := range s.Windows {
		if t := nextOpening(w, now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return false, next
}

func loc(w plan.Window) *time.Location {
	if w.Location == nil {
		return time.UTC
	}
	return w.Location
}

// at returns the wall-clock time of day off on the calendar day of day, in day's location. It builds
// the time with time.Date so that a day with a daylight-saving change still opens at the written hour.
func at(day time.Time, off time.Duration) time.Time {
	y, m, d := day.Date()
	h := int(off / time.Hour)
	mi := int((off % time.Hour) / time.Minute)
	return time.Date(y, m, d+h/24, h%24, mi, 0, 0, day.Location())
}

func hasDay(w plan.Window, d time.Weekday) bool {
	if len(w.Days) == 0 {
		return true
	}
	for _, x := range w.Days {
		if x == d {
			return true
		}
	}
	return false
}

// inWindow reports whether now falls in w. A window whose end is not after its start spans midnight;
// its days name the day it opens.
func inWindow(w plan.Window, now time.Time) bool {
	local := now.In(loc(w))
	for back := 0; back <= 1; back++ {
		day := local.AddDate(0, 0, -back)
		if !hasDay(w, day.Weekday()) {
			continue
		}
		start := at(day, w.Start)
		end := at(day, w.End)
		if !end.After(start) {
			end = at(day.AddDate(0, 0, 1), w.End)
		}
		if !now.Before(start) && now.Before(end) {
			return true
		}
	}
	return false
}

func nextOpening(w plan.Window, now time.Time) time.Time {
	local := now.In(loc(w))
	for i := 0; i <= 8; i++ {
		day := local.AddDate(0, 0, i)
		if !hasDay(w, day.Weekday()) {
			continue
		}
		if start := at(day, w.Start); !start.Before(now) {
			return start
		}
	}
	return time.Time{}
}

// RollbackJobID returns the deterministic id of a rollback job: plan.JobID's form with "r" for "w",
// as in "thermostat-fw-2-4-0-1a2b3c4d-r00-b000" or "...-r03-b012-p2".
func RollbackJobID(name, planHash string, wave, batch, part int) string {
	return plan.StageJobID(name, planHash, 'r', wave, batch, part)
}

// SplitIn splits ids into consecutive [start, end) ranges whose condition `deviceId IN [...]` (as
// InCondition writes it) is at most max characters; an id too long on its own still gets a range.
func SplitIn(ids []string, max int) [][2]int { return query.SplitIn("deviceId", ids, max) }

// InCondition is the job condition that selects exactly ids, as query.Format writes it.
func InCondition(ids []string) string { return query.FormatIn("deviceId", ids) }

// JobsToStart picks the jobs of a batch to create now: those not created yet, in order, as far as
// limit jobs may run at once (the tier's concurrent jobs).
func JobsToStart(jobs []*Job, limit int) []*Job {
	running := 0
	for _, j := range jobs {
		if j.Created && !j.Collected {
			running++
		}
	}
	var out []*Job
	for _, j := range jobs {
		if !j.Created && running < limit {
			out = append(out, j)
			running++
		}
	}
	return out
}

// AllSettled reports whether every job ended and its outcome was recorded.
func AllSettled(jobs []*Job) bool {
	for _, j := range jobs {
		if !j.Collected {
			return false
		}
	}
	return true
}

// StatsCounts reads a job's statistics over its devices: the devices that succeeded and failed so
// far, and the device operations left (devices the job has not taken yet included). Without
// statistics every device is left.
func StatsCounts(s *hubapi.DeviceJobStatistics, devices int) (c Counts, left int) {
	c.Targeted = devices
	if s == nil {
		return c, devices
	}
	c.Succeeded, c.Failed = int(s.SucceededCount), int(s.FailedCount)
	left = int(s.PendingCount + s.RunningCount)
	if rest := devices - int(s.DeviceCount); rest > 0 {
		left += rest
	}
	return c, left
}

// jobRefs points at each job of jobs, so that polling updates them in place.
func jobRefs(jobs []Job) []*Job {
	out := make([]*Job, len(jobs))
	for i := range jobs {
		out[i] = &jobs[i]
	}
	return out
}

// StepKind names what the engine does next.
type StepKind string

// The steps.
const (
	StepDone         StepKind = "done"         // every wave done
	StepHalted       StepKind = "halted"       // a gate failed and the plan says halt
	StepAccept       StepKind = "accept"       // the halt was accepted (rollout resume --accept): continue past it
	StepRolledBack   StepKind = "rolledBack"   // the rollout was rolled back
	StepRollback     StepKind = "rollback"     // roll back (start or continue)
	StepWaitApproval StepKind = "waitApproval" // Wave needs `rollout approve`
	StepPaused       StepKind = "paused"       // `rollout pause` holds the rollout until `rollout resume`
	StepWaitSchedule StepKind = "waitSchedule" // no schedule window is open until Until
	StepResolve      StepKind = "resolve"      // start Wave: resolve and store its devices
	StepBatch        StepKind = "batch"        // run (or continue) Batch of Wave
	StepRetry        StepKind = "retry"        // Batch's jobs ended: start or follow its next retry, or judge it
	StepWaitRetry    StepKind = "waitRetry"    // Batch's next retry starts at Until
	StepWaveGate     StepKind = "waveGate"     // every batch of Wave ran: judge the wave, start the bake
	StepVerify       StepKind = "verify"       // poll Wave's verify condition
	StepWaitBake     StepKind = "waitBake"     // Wave bakes until Until
	StepFinishWave   StepKind = "finishWave"   // Wave passed its bake and verify
)

// Step is the next thing to do.
type Step struct {
	Kind  StepKind
	Wave  int
	Batch int
	Until time.Time
	// Ahead is, for a batch step, what may be prepared in the background while the batch's jobs run
	// (nil: nothing); see PrepareAhead.
	Ahead *Prepare
}

// Prepare is work done ahead, while a batch's jobs run, so that the next job starts right after the
// gate: capturing the prior values of batch Batch of wave Wave, or resolving wave Wave's devices
// (Batch -1). It only reads the hub; its result is stored once it finished.
type Prepare struct{ Wave, Batch int }

// PrepareAhead decides what may be prepared while batch bi of wave wi runs: a later batch's
// snapshot first, in order (snapshots are the slowest preparation on a fast hub), then the next
// wave's devices, then its first batch's snapshot. A wave with bake or verify is not run ahead of, nor
// a next wave behind an approval or a closed schedule window: the hub waits for them anyway, and a
// wave's devices are best resolved close to its start.
func PrepareAhead(p *plan.Plan, st *State, wi, bi int, now time.Time) *Prepare {
	w, pw := &st.Waves[wi], p.Waves[wi]
	for j := bi + 1; j < len(w.Batches) && pw.Action.TwinUpdate != nil; j++ {
		if !w.Batches[j].Snapshotted {
			return &Prepare{Wave: wi, Batch: j}
		}
	}
	ni := wi + 1
	if ni >= len(st.Waves) || pw.Bake != 0 || pw.Verify != nil {
		return nil
	}
	nw, npw := &st.Waves[ni], p.Waves[ni]
	if nw.Status != StatusPending || npw.Approval {
		return nil
	}
	if open, _ := ScheduleOpen(p.Schedule, now); !open {
		return nil
	}
	switch {
	case !nw.Resolved:
		return &Prepare{Wave: ni, Batch: -1}
	case npw.Action.TwinUpdate != nil && len(nw.Batches) > 0 && !nw.Batches[0].Snapshotted:
		return &Prepare{Wave: ni, Batch: 0}
	}
	return nil
}

// Next decides the next step of rollout st of plan p at now; approved reports whether a wave's approval
// gate was released. It is NextWith without pause or promotion.
func Next(p *plan.Plan, st *State, approved func(wave string) bool, now time.Time) Step {
	return NextWith(p, st, Signals{Approved: approved}, now)
}

// Signals are what people said to a rollout beside its state: approvals, a pause, promotions.
type Signals struct {
	Approved func(wave string) bool // the wave's approval gate was released
	Paused   bool                   // `rollout pause`: hold at the next safe point
	Promoted func(wave string) bool // `rollout promote`: release the wave's gate, or end its bake, early
	Accepted bool                   // `rollout resume --accept`: the current halt's failures are accepted
}

// NextWith decides the next step of rollout st of plan p at now, given signals. A pause holds the
// rollout before its next step, but never a rollback; a promotion releases a wave's approval gate or
// ends its bake early (its verify must still pass); an accepted halt continues past the gate that
// failed.
func NextWith(p *plan.Plan, st *State, sig Signals, now time.Time) Step {
	approved, promoted := sig.Approved, sig.Promoted
	if promoted == nil {
		promoted = func(string) bool { return false }
	}
	switch {
	case st.Status == StatusHalted && sig.Accepted:
		return Step{Kind: StepAccept, Wave: max(0, st.failedWave())}
	case st.Status == StatusHalted:
		return Step{Kind: StepHalted}
	case st.Status == StatusRolledBack:
		return Step{Kind: StepRolledBack}
	case st.Status == StatusRollingBack || st.Requested:
		return Step{Kind: StepRollback}
	case st.Status == StatusDone:
		return Step{Kind: StepDone}
	case sig.Paused:
		return Step{Kind: StepPaused, Wave: firstOpen(st)}
	}
	for i := range st.Waves {
		w, pw := &st.Waves[i], &p.Waves[i]
		switch w.Status {
		case StatusDone:
			continue
		case StatusPending:
			if pw.Approval && !approved(pw.Name) && !promoted(pw.Name) {
				return Step{Kind: StepWaitApproval, Wave: i}
			}
			if open, next := ScheduleOpen(p.Schedule, now); !open {
				return Step{Kind: StepWaitSchedule, Wave: i, Until: next}
			}
			return Step{Kind: StepResolve, Wave: i}
		case StatusRunning:
			if !w.Resolved {
				return Step{Kind: StepResolve, Wave: i}
			}
			for b := range w.Batches {
				if w.Batches[b].Status == StatusRetrying {
					return retryStep(pw, w, i, b, now)
				}
				if w.Batches[b].Status != StatusDone {
					return Step{Kind: StepBatch, Wave: i, Batch: b, Ahead: PrepareAhead(p, st, i, b, now)}
				}
			}
			return Step{Kind: StepWaveGate, Wave: i}
		case StatusBaking:
			if pw.Verify != nil && !w.VerifyOK {
				return Step{Kind: StepVerify, Wave: i}
			}
			if end := w.BakeStart.Add(pw.Bake); now.Before(end) && !promoted(pw.Name) {
				return Step{Kind: StepWaitBake, Wave: i, Until: end}
			}
			return Step{Kind: StepFinishWave, Wave: i}
		}
	}
	return Step{Kind: StepDone}
}

// firstOpen is the first wave that is not done (the last one when all are).
func firstOpen(st *State) int {
	for i, w := range st.Waves {
		if w.Status != StatusDone {
			return i
		}
	}
	return max(0, len(st.Waves)-1)
}
