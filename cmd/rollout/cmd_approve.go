package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/spf13/cobra"
)

// approveOptions is what `rollout approve` was asked to record.
type approveOptions struct {
	byFlags
	dir  string
	name string
	wave string
}

func newApproveCmd(e *env) *cobra.Command {
	o := &approveOptions{}
	cmd := &cobra.Command{
		Use:   "approve [flags] NAME --wave WAVE",
		Short: "release a wave's approval gate (rollout approve NAME --wave W)",
		Long: "Records an approval of a wave's gate, bound to the plan the rollout runs: a waiting apply, or the\n" +
			"next --no-wait run, starts the wave. It works while an apply runs, and in advance of the gate.\n" +
			"Exit 0; 1 for an unknown rollout or wave, or an approval that would mean nothing (no gate, approved\n" +
			"already, rollout over); 4 when the state cannot be written.",
		Example: examples(
			"rollout approve thermostat-fw-2-4-0 --wave eu",
			"rollout approve thermostat-fw-2-4-0 --wave eu --reason 'canary looks good'",
			"rollout approve --state /var/lib/rollout thermostat-fw-2-4-0 --wave rest --by release-bot"),
		Args:              exactArgs(1, "rollout name"),
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.wave == "" {
				return usagef("--wave is required: the wave whose gate to release")
			}
			o.name = args[0]
			return exitWith(runApprove(e, o))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	cmd.Flags().StringVar(&o.wave, "wave", "", "the wave to release (required)")
	o.bind(cmd.Flags(), "why, for the record (shown by status and in apply's log)")
	_ = cmd.RegisterFlagCompletionFunc("wave", completeWaves(e))
	return cmd
}

// runApprove records an approval; a waiting apply (or the next cron run) continues.
func runApprove(e *env, o *approveOptions) int {
	store, ok := existingStore(e, "approve", o.dir, o.name)
	if !ok {
		return exitInvalid
	}
	who, host := whoOf(e, store, o.by)
	rec, err := engine.Approve(store, o.wave, engine.Approval{By: who, Host: host, At: time.Now(), Reason: o.reason})
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
		fmt.Fprintf(e.stdout, "approved wave %s of rollout %s in advance: its gate opens when the rollout reaches it\n", o.wave, o.name)
	} else {
		fmt.Fprintf(e.stdout, "approved wave %s of rollout %s\n", o.wave, o.name)
	}
	return exitOK
}

// existingStore opens the state of rollout name under dir for the command cmd, saying why when there
// is none (the command then exits 1).
func existingStore(e *env, cmd, dir, name string) (*engine.Store, bool) {
	store, err := openState(e, dir, name)
	if err == nil {
		var ok bool
		if ok, err = store.Exists(); err == nil && !ok {
			err = fmt.Errorf("no rollout %q under %s", name, dir)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return nil, false
	}
	return store, true
}

// whoOf is who a record names, and the host it was made on: by when given, else the Microsoft Entra
// identity the rollout's shared state is reached as, else the approver.
func whoOf(e *env, store *engine.Store, by string) (who, host string) {
	host, _ = os.Hostname()
	if by != "" {
		return by, host
	}
	if ider, ok := store.Records().(interface {
		Identity(context.Context) (string, error)
	}); ok {
		if id, err := ider.Identity(context.Background()); err == nil && id != "" {
			return id, host
		}
	}
	return approver(e), host
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
