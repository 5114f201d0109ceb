package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

func init() {
	commands["rollback"] = command{
		summary: "roll back what a rollout applied (twins restored, direct methods compensated)",
		run:     runRollback,
	}
}

// runRollback rolls a rollout back on demand. It needs the hub but no plan: the state holds the
// captured priors and the compensating method. Exit 0 when rolled back, 1 for bad usage or an unknown
// rollout, 4 for hub or state errors (and while an apply holds the rollout, unless --wait), 130 when
// stopped by Ctrl-C (run again to continue).
func runRollback(e *env) int {
	f := engFlags{keepHub: true}
	var wait time.Duration
	var force bool
	waitFlag := func(fs *flag.FlagSet) {
		fs.DurationVar(&wait, "wait", 0, "when an apply holds the rollout: ask it to stop at its next safe point (Ctrl-C's stop), wait this long for it, then roll back")
		fs.BoolVar(&force, "force", false, "restore prior values even on twins someone changed since the rollout (by default they are left alone)")
	}
	name, set, code, ok := f.parseOne(e, "rollback", "rollout rollback [flags] NAME", "rollout name", false, waitFlag)
	if !ok {
		return code
	}
	if f.emulate != "" && !set["state"] {
		fmt.Fprintln(e.stderr, "rollout rollback: --emulate needs --state: the rollout to roll back lives in a state directory")
		return exitInvalid
	}
	store, ok := existingStore(e, "rollback", f.state, name)
	if !ok {
		return exitInvalid
	}
	if code, ok := takeOver(e, store, wait); !ok {
		return code
	}
	// The state is opened before the hub is reached: an unknown rollout never dials it.
	opened := func(*engSession) (*engine.Store, error) { return store, nil }
	return f.drive(e, "rollback", set, opened, func(ctx context.Context, o engine.Options) (*engine.Result, error) {
		o.Force = force
		return engine.Rollback(ctx, o)
	})
}

// takeOver makes sure no apply holds the rollout of store. Without wait it says how to proceed and
// fails; with wait it asks a holder on this host to stop at its next safe point (SIGINT, as Ctrl-C)
// and waits up to wait for it to let go.
func takeOver(e *env, store *engine.Store, wait time.Duration) (code int, ok bool) {
	h, held, err := store.Holder()
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitHub, false
	}
	if !held {
		return 0, true
	}
	since := h.Since.Local().Format(time.RFC3339)
	if wait <= 0 {
		fmt.Fprintf(e.stderr, "rollout rollback: rollout %s is being applied by pid %d on %s since %s; "+
			"stop it with Ctrl-C (or kill -INT %d on %s) and run this again, or give --wait 5m to have it stop at its next safe point\n",
			store.Name(), h.PID, h.Host, since, h.PID, h.Host)
		return exitHub, false
	}
	if err := interruptHolder(h); err != nil {
		fmt.Fprintf(e.stderr, "rollout rollback: cannot ask pid %d on %s to stop: %v; stop it there with Ctrl-C, then run this again\n",
			h.PID, h.Host, err)
		return exitHub, false
	}
	fmt.Fprintf(e.stderr, "rollout rollback: asked pid %d on %s to stop at its next safe point; waiting up to %s\n", h.PID, h.Host, wait)
	deadline := time.Now().Add(wait)
	for held && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if _, held, err = store.Holder(); err != nil {
			fmt.Fprintln(e.stderr, "rollout rollback:", err)
			return exitHub, false
		}
	}
	if held {
		fmt.Fprintf(e.stderr, "rollout rollback: pid %d on %s still holds rollout %s after %s; run this again once it stopped\n",
			h.PID, h.Host, store.Name(), wait)
		return exitHub, false
	}
	return 0, true
}
