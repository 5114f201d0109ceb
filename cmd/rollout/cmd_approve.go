package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

func init() {
	commands["approve"] = command{
		summary: "release a wave's approval gate (rollout approve NAME --wave W)",
		run:     runApprove,
	}
}

// runApprove records an approval; a waiting apply (or the next cron run) continues. It works while an
// apply runs. Exit 0, 1 for bad usage or an unknown rollout or wave, 4 when the state cannot be written.
func runApprove(e *env) int {
	fs := newFlags(e, "approve", "rollout approve [--state DIR] NAME --wave WAVE")
	dir := stateDirFlag(fs, e)
	wave := fs.String("wave", "", "the wave to release (required)")
	pos, _, code, ok := parseCommand(fs, e.args)
	if !ok {
		return code
	}
	if len(pos) != 1 || *wave == "" {
		fs.Usage()
		return exitInvalid
	}
	store, err := engine.OpenStore(*dir, pos[0])
	if err == nil && !store.Exists() {
		err = fmt.Errorf("no rollout %q under %s", pos[0], *dir)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout approve:", err)
		return exitInvalid
	}
	user := e.getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, _ := os.Hostname()
	if err := engine.Approve(store, *wave, user+"@"+host, time.Now()); err != nil {
		fmt.Fprintln(e.stderr, "rollout approve:", err)
		var unknown *engine.UnknownWaveError
		if errors.As(err, &unknown) {
			return exitInvalid
		}
		return exitHub
	}
	fmt.Fprintf(e.stdout, "approved wave %s of rollout %s\n", *wave, pos[0])
	return exitOK
}
