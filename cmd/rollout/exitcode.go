package main

import (
	"context"
	"errors"

	"github.com/iot-rollout/rollout/engine"
)

// Exit codes, as the README and `rollout --help` document them.
const (
	exitOK         = 0 // done (with --no-wait: progressing normally; for rollback: rolled back)
	exitInvalid    = 1 // invalid plan or usage
	exitHalted     = 2 // halted by a gate or a budget, or a wave that selects no device
	exitRolledBack = 3 // an apply that ended rolled back
	// exitFindings is `rollout plan --fail-on-warning` on a preview with findings. It shares 2 with
	// exitHalted so that a CI step treats "the preview would not pass review" like a halted gate.
	exitFindings = 2
	exitHub      = 4  // hub, auth or state error; also: the state is locked by another holder
	exitWaiting  = 10 // waiting for a schedule window, bake, approval or a pause (with --no-wait)
	// exitInterrupted: Ctrl-C stopped a run at a safe point (128 + SIGINT, the shell convention);
	// running the same command again continues.
	exitInterrupted = 130
)

// exitCodeTable is the exit codes as `rollout --help` lists them.
const exitCodeTable = `Exit codes:
  0    done (with --no-wait: progressing normally; for rollback: the rollback completed)
  1    invalid plan or usage
  2    halted by a gate or a budget, a wave that selects no device; plan --fail-on-warning: findings
  3    an apply that ended rolled back
  4    hub, auth or state error (also: the state is locked by another holder)
  10   waiting for a schedule window, bake, approval or a pause (with --no-wait)
  130  stopped by Ctrl-C at a safe point; run the same command again to continue`

// runErrorCode is the exit code of an engine operation that returned err, and whether err is one
// the caller words itself (a changed plan, a stop). Every error not named here is a hub, auth or
// state error.
func runErrorCode(err error) int {
	var pc *engine.PlanChangedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &pc):
		return exitInvalid
	case errors.Is(err, engine.ErrStopped), errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitHub
}

// resultCode is the exit code of where a run left the rollout: halted, rolled back (a success for
// `rollout rollback`, which asked for it), waiting with --no-wait, or done or progressing.
func resultCode(cmd string, res *engine.Result) int {
	switch {
	case res.Status == engine.StatusHalted:
		return exitHalted
	case res.Status == engine.StatusRolledBack && cmd == "rollback":
		return exitOK
	case res.Status == engine.StatusRolledBack:
		return exitRolledBack
	case res.Waiting:
		return exitWaiting
	}
	return exitOK
}
