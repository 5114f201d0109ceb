package engine

import (
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// This file holds verify's decisions, pure functions as in decide.go.

// VerifyState is the judgement of a wave's verify check.
type VerifyState int

// The verify judgements.
const (
	VerifyWait VerifyState = iota // not met yet, keep polling
	VerifyPass
	VerifyFail
)

// JudgeVerify judges one verify read: matching of total wave devices satisfy the verify condition,
// the bake began at start; the rate must reach v.MinRate before start+v.Within; twin queries lag behind
// the twins, so a read below the rate fails the wave only once the time is up, never on its own.
// reads counts the reads so far, this one included: at least two are needed to fail, so a run started
// late (a cron job after a pause) never fails a wave on its first read.
func JudgeVerify(v *plan.Verify, matching, total, reads int, start, now time.Time) VerifyState {
	if v == nil || total == 0 {
		return VerifyPass
	}
	if float64(matching)/float64(total)+1e-9 >= v.MinRate {
		return VerifyPass
	}
	if reads >= 2 && !now.Before(start.Add(v.Within)) {
		return VerifyFail
	}
	return VerifyWait
}

// JudgeVerifyHeld is JudgeVerify with v.Hold: once the rate is reached it must stay reached for Hold
// (a device that reports the new value and then reverts counts against it). metSince is when the
// current run of reads at the rate began (zero: none); it returns the judgement and the start of that
// run to record. The rate must first be reached within Within, as without a hold, and a whole hold
// must be complete by start+Within+Hold: a run that breaks starts again, while there is time for it.
func JudgeVerifyHeld(v *plan.Verify, matching, total, reads int, start, metSince, now time.Time) (VerifyState, time.Time) {
	state := JudgeVerify(v, matching, total, reads, start, now)
	if v == nil || v.Hold <= 0 || total == 0 {
		return state, metSince
	}
	if state != VerifyPass {
		if reads >= 2 && !now.Before(start.Add(v.Within+v.Hold)) {
			return VerifyFail, time.Time{}
		}
		return VerifyWait, time.Time{}
	}
	if metSince.IsZero() {
		metSince = now
	}
	switch {
	case now.Sub(metSince) >= v.Hold:
		return VerifyPass, metSince
	case reads >= 2 && metSince.After(start.Add(v.Within)) && !now.Before(start.Add(v.Within+v.Hold)):
		return VerifyFail, metSince
	}
	return VerifyWait, metSince
}

// VerifyReachable applies a wave's maxUnreachable (limit; nil: none) to a verify read once verify's
// time is up: of total devices, matching satisfy the condition and unreachable are disconnected
// without satisfying it. A twin update reaches a disconnected device only when it reconnects, so
// until within such a device is pending; from then on it is unreachable, judged apart from failures:
// exceeded reports that the unreachable devices pass limit, and the rate is judged over the others
// (m of t). Without a limit they only lower the rate, as in the success gate.
func VerifyReachable(limit *plan.Limit, matching, total, unreachable int) (m, t int, exceeded bool) {
	if limit == nil || unreachable <= 0 {
		return matching, total, false
	}
	if limit.Exceeded(unreachable, total) {
		return matching, total, true
	}
	return matching, total - unreachable, false
}
