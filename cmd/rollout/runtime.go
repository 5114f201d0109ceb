package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

// stateRef names the state a run works on: the rollout and the directory it lives in, decided before
// the hub is reached. The store is opened only once the hub answered, so a hub that cannot be reached
// leaves no state directory behind.
type stateRef struct {
	dir  string
	name string
	// temp is set when dir is a temporary directory the run throws away (--emulate without --state).
	temp bool
}

// engineOp is one engine operation on a reached hub: apply or rollback.
type engineOp func(context.Context, engine.Options) (*engine.Result, error)

// drive reaches the hub the flags name and runs op on it over the state ref names, rendering its
// events, and turns the outcome into the exit code. Ctrl-C reaches op as Options.Stop, a second one
// cancels its context.
func (f *runFlags) drive(e *env, cmd string, ref stateRef, op engineOp) int {
	ctx, stop, release := interrupts(context.Background(), e)
	defer release()
	sess, err := f.connect(ctx, e)
	if err != nil {
		return connectFailed(e, cmd, err)
	}
	defer sess.close()
	st, err := openState(e, ref.dir, ref.name)
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return exitHub
	}
	h := newHints(ref.dir, f.emulate)
	view := newView(e, f.output, h)
	obs, closeNotify := f.notifier(e, view)
	res, err := op(ctx, engine.Options{Hub: sess.hub, HubName: sess.name, Store: st, Quotas: sess.quotas,
		Observer: obs, NoWait: f.noWait, Stop: stop, LockTimeout: f.lockTimeout})
	view.close()
	closeNotify()
	code := finish(e, cmd, st, f, h, res, err)
	if ref.temp && hasState(st) {
		fmt.Fprintf(e.stderr, "rollout %s: the state (and the emulated hub) lived in a temporary directory and is gone with this run; "+
			"give --state DIR to keep them for status, approve, rollback and the next run\n", cmd)
	}
	return code
}

// interrupts turns the first Ctrl-C (or SIGTERM) into a stop at the next safe point and the second into
// cancelling ctx.
func interrupts(ctx context.Context, e *env) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-sig:
				n++
				if n == 1 {
					fmt.Fprintln(e.stderr, "rollout: stopping at the next safe point (Ctrl-C again to cancel now)")
					close(stop)
				} else {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, stop, func() {
		signal.Stop(sig)
		close(done)
		cancel()
	}
}

// finish writes the report and turns a run's result into the exit code, saying what a person does
// next.
func finish(e *env, cmd string, store *engine.Store, f *runFlags, h hints, res *engine.Result, err error) int {
	if f.report != "" && hasState(store) {
		// The rollout's outcome stands whatever happens to its report: a report that cannot be
		// written is said, never turned into a hub error. The state keeps every outcome.
		if rerr := writeReport(store, f.report, time.Now()); rerr != nil {
			fmt.Fprintf(e.stderr, "rollout %s: the report could not be written (%v); `rollout report %s --out FILE%s` writes it from the state\n",
				cmd, rerr, store.Name(), h.state)
		}
	}
	if err != nil {
		var pc *engine.PlanChangedError
		switch {
		case errors.As(err, &pc):
			fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
			if h.hub != "" {
				fmt.Fprintf(e.stderr, "rollout %s: to undo what was applied: rollout rollback %s%s\n", cmd, pc.Name, h.hub)
			}
		case errors.Is(err, context.Canceled):
			fmt.Fprintf(e.stderr, "rollout %s: cancelled; the state is saved, run again to continue\n", cmd)
		default:
			fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
			if hubs := failedHubs(err); len(hubs) > 0 {
				fmt.Fprintf(e.stderr, "rollout %s: the state is saved; once %s %s, run the same command again to continue\n",
					cmd, hubList(hubs), map[bool]string{true: "answers", false: "answer"}[len(hubs) == 1])
			}
		}
		return runErrorCode(err)
	}
	code := resultCode(cmd, res)
	where := outcome(e, cmd, store.Name(), h, res)
	if f.noWait {
		// A cron log's last line: where the rollout stands and why this run exits as it does.
		if code == exitOK && where != "done" {
			where += " (exit 0, progressing)"
		} else {
			where += fmt.Sprintf(" (exit %d)", code)
		}
		fmt.Fprintf(e.stderr, "rollout %s: %s\n", cmd, where)
	}
	return code
}

// outcome says what a person does next after a run that left the rollout where res says, and words
// where the rollout stands for --no-wait's last line.
func outcome(e *env, cmd, name string, h hints, res *engine.Result) (where string) {
	switch {
	case res.Status == engine.StatusHalted:
		fmt.Fprintf(e.stderr, "rollout %s: halted: %s\n", cmd, res.Reason)
		fmt.Fprintf(e.stderr, "rollout %s: undo what was applied with `rollout rollback %s%s`, or accept the failures and continue with `rollout resume %s%s --accept REASON`\n",
			cmd, name, h.hub, name, h.state)
		return "halted"
	case res.Status == engine.StatusRolledBack:
		fmt.Fprintf(e.stderr, "rollout %s: rolled back: %s\n", cmd, res.Reason)
		return "rolled back"
	case res.Waiting:
		return waitingFor(res, name, h)
	case res.Status == engine.StatusDone:
		return "done"
	case res.Status == engine.StatusRollingBack:
		return "rolling back; its jobs run on the hub"
	}
	return progressText(res)
}

// waitingFor words what a --no-wait run that exits 10 waits for.
func waitingFor(res *engine.Result, name string, h hints) string {
	wave := "wave " + res.WaveName + " "
	switch res.Step {
	case engine.StepWaitApproval:
		return fmt.Sprintf("%swaiting for approval: rollout approve %s --wave %s%s", wave, name, res.WaveName, h.state)
	case engine.StepWaitSchedule:
		if res.Until.IsZero() {
			return wave + "waiting for a schedule window; none opens again"
		}
		return fmt.Sprintf("%swaiting for the schedule window at %s", wave, clock(res.Until))
	case engine.StepWaitBake:
		return fmt.Sprintf("%sbaking until %s", wave, clock(res.Until))
	case engine.StepVerify:
		return fmt.Sprintf("%swaiting for verify until %s", wave, clock(res.Until))
	case engine.StepPaused:
		return fmt.Sprintf("paused: rollout resume %s%s", name, h.state)
	case engine.StepWaitRetry:
		return fmt.Sprintf("%sretries devices at %s", wave, clock(res.Until))
	}
	return "waiting"
}

// progressText words where a run that left jobs running stands.
func progressText(res *engine.Result) string {
	p := res.Progress
	if res.Step != engine.StepBatch || p == nil {
		return "progressing"
	}
	return fmt.Sprintf("wave %s batch %d/%d running, %d/%d done", p.WaveName, p.Batch+1, p.Batches, p.Done, p.Devices)
}

// clock renders t as a person's local time of day, with the date when it is not today.
func clock(t time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); y == time.Now().Year() && m == time.Now().Month() && d == time.Now().Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05 MST")
}
