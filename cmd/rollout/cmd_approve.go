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
// apply runs. Exit 0; 1 for bad usage, an unknown rollout or wave, or an approval that would mean
// nothing (no gate, approved already, rollout over); 4 when the state cannot be written.
func runApprove(e *env) int {
	fs := newFlags(e, "approve", "rollout approve [--state DIR] NAME --wave WAVE [--by WHO] [--reason WHY]")
	dir := stateDirFlag(fs, e)
	wave := fs.String("wave", "", "the wave to release (required)")
	by := fs.String("by", "", "who approves (default: $GITHUB_ACTOR, $BUILD_REQUESTEDFOR, else $USER@host)")
	reason := fs.String("reason", "", "why, for the record (shown by status and in apply's log)")
	pos, _, code, ok := parseCommand(fs, e.args)
	if !ok {
		return code
	}
	if len(pos) != 1 || *wave == "" {
		fs.Usage()
		return exitInvalid
	}
	store, ok := existingStore(e, "approve", *dir, pos[0])
	if !ok {
		return exitInvalid
	}
	rec, err := engine.Approve(store, *wave, engine.Approval{By: whoOf(e, *by), At: time.Now(), Reason: *reason})
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout approve:", err)
		var unknown *engine.UnknownWaveError
		var refused *engine.RefusedError
		if errors.As(err, &unknown) || errors.As(err, &refused) {
			return exitInvalid
		}
		return exitHub
	}
	if rec.Early {
		fmt.Fprintf(e.stdout, "approved wave %s of rollout %s in advance: its gate opens when the rollout reaches it\n", *wave, pos[0])
	} else {
		fmt.Fprintf(e.stdout, "approved wave %s of rollout %s\n", *wave, pos[0])
	}
	return exitOK
}

// existingStore opens the state of rollout name under dir for the command cmd, saying why when there
// is none (the command then exits 1).
func existingStore(e *env, cmd, dir, name string) (*engine.Store, bool) {
	store, err := engine.OpenStore(dir, name)
	if err == nil && !store.Exists() {
		err = fmt.Errorf("no rollout %q under %s", name, dir)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return nil, false
	}
	return store, true
}

// whoOf is who a record names: by when given, else the approver.
func whoOf(e *env, by string) string {
	if by != "" {
		return by
	}
	return approver(e)
}

// approver names the person or pipeline approving: the CI system's requester when there is one, else
// the OS user at this host.
func approver(e *env) string {
	for _, k := range []string{"GITHUB_ACTOR", "BUILD_REQUESTEDFOR"} {
		if v := e.getenv(k); v != "" {
			return v
		}
	}
	user := e.getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, _ := os.Hostname()
	return user + "@" + host
}
