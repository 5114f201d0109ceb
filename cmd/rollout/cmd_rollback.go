package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/iot-rollout/rollout/engine"
)

func init() {
	commands["rollback"] = command{
		summary: "roll back what a rollout applied (twins restored, direct methods compensated)",
		run:     runRollback,
	}
}

// runRollback rolls a rollout back on demand. It needs the hub but no plan: the state holds the
// captured priors and the compensating method. Exit 3 when rolled back, 1 for bad usage or an unknown
// rollout, 4 for hub or state errors, 130 when stopped by Ctrl-C (run again to continue).
func runRollback(e *env) int {
	f := engFlags{keepHub: true}
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f.register(fs, e, false)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: rollout rollback [flags] NAME")
		fs.PrintDefaults()
	}
	pos, set, err := parseArgs(fs, e.args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if err == nil {
		err = f.check(set)
	}
	if err == nil && len(pos) != 1 {
		err = errors.New("give exactly one rollout name")
	}
	if err == nil && f.emulate != "" && !set["state"] {
		err = errors.New("--emulate needs --state: the rollout to roll back lives in a state directory")
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitInvalid
	}
	store, err := engine.OpenStore(f.state, pos[0])
	if err == nil && !store.Exists() {
		err = fmt.Errorf("no rollout %q under %s", pos[0], f.state)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitInvalid
	}
	ctx, stop, release := interrupts(context.Background(), e)
	defer release()
	sess, err := f.connect(ctx, e, set)
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitHub
	}
	defer sess.close()
	view := newView(e, f.output)
	res, err := engine.Rollback(ctx, engine.Options{Hub: sess.hub, Store: store, Quotas: sess.quotas,
		Observer: view, Stop: stop})
	view.close()
	return finish(e, "rollback", store, &f, res, err)
}
