package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

func init() {
	commands["pause"] = command{
		summary: "hold a rollout at its next safe point until rollout resume (rollout pause NAME)",
		run:     func(e *env) int { return runControl(e, "pause") },
	}
	commands["resume"] = command{
		summary: "lift a pause (rollout resume NAME)",
		run:     func(e *env) int { return runControl(e, "resume") },
	}
	commands["promote"] = command{
		summary: "release the current wave's approval gate, or end its bake early (rollout promote NAME)",
		run:     func(e *env) int { return runControl(e, "promote") },
	}
}

// runControl runs pause, resume or promote: a record beside the rollout's state, which a running
// apply (or the next --no-wait run) reads at its next step. They work while an apply runs. Exit 0; 1
// for bad usage, an unknown rollout, or a word that means nothing now (see engine.RefusedError); 4
// when the state cannot be written.
func runControl(e *env, name string) int {
	fs := newFlags(e, name, "rollout "+name+" [--state DIR] NAME [--by WHO] [--reason WHY]")
	dir := stateDirFlag(fs, e)
	by := fs.String("by", "", "who (default: $GITHUB_ACTOR, $BUILD_REQUESTEDFOR, else $USER@host)")
	reason := fs.String("reason", "", "why, for the record")
	pos, _, code, ok := parseCommand(fs, e.args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitInvalid
	}
	store, ok := existingStore(e, name, *dir, pos[0])
	if !ok {
		return exitInvalid
	}
	c := engine.Control{By: whoOf(e, *by), At: time.Now(), Reason: *reason}
	var err error
	h := newHints(*dir, "")
	var done string
	switch name {
	case "pause":
		err = engine.Pause(store, c)
		done = fmt.Sprintf("paused rollout %s: it holds at its next safe point; `rollout resume %s%s` lifts it", pos[0], pos[0], h.state)
	case "resume":
		err = engine.Resume(store)
		done = fmt.Sprintf("resumed rollout %s: a running apply, or the next one, continues", pos[0])
	case "promote":
		var wave string
		wave, err = engine.Promote(store, c)
		done = fmt.Sprintf("promoted wave %s of rollout %s: its gate is released, or its bake ends, at the next step", wave, pos[0])
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", name, err)
		var refused *engine.RefusedError
		if errors.As(err, &refused) {
			return exitInvalid
		}
		return exitHub
	}
	fmt.Fprintln(e.stdout, done)
	return exitOK
}
