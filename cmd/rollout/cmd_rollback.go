package main

import (
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
	name, set, code, ok := f.parseOne(e, "rollback", "rollout rollback [flags] NAME", "rollout name", false)
	if !ok {
		return code
	}
	if f.emulate != "" && !set["state"] {
		fmt.Fprintln(e.stderr, "rollout rollback: --emulate needs --state: the rollout to roll back lives in a state directory")
		return exitInvalid
	}
	store, err := engine.OpenStore(f.state, name)
	if err == nil && !store.Exists() {
		err = fmt.Errorf("no rollout %q under %s", name, f.state)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitInvalid
	}
	// The state is opened before the hub is reached: an unknown rollout never dials it.
	opened := func(*engSession) (*engine.Store, error) { return store, nil }
	return f.drive(e, "rollback", set, opened, engine.Rollback)
}
