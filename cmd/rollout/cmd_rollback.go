package main

import (
	"context"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/plan"
	"github.com/spf13/cobra"
)

// rollbackOptions is what `rollout rollback` was asked to do.
type rollbackOptions struct {
	runFlags
	name  string
	wait  time.Duration
	force bool
}

func newRollbackCmd(e *env) *cobra.Command {
	o := &rollbackOptions{runFlags: runFlags{hubFlags: hubFlags{keepHub: true}}}
	cmd := &cobra.Command{
		Use:   "rollback [flags] NAME",
		Short: "roll back what a rollout applied (twins restored, direct methods compensated)",
		Long: "Rolls back what rollout NAME applied, newest batch first: twin updates restore each device's captured\n" +
			"prior values, direct methods call the plan's rollback method. It needs the hub but no plan: a rollout of\n" +
			"a plan with hubs reaches each hub again as the plan named it, recorded in the state by reference only\n" +
			"(the environment variable of its connection string, or its host for Microsoft Entra; --emulate NAME=FLEET\n" +
			"once per hub for an emulated one).\n" +
			"Exit 0 when rolled back, 1 for bad usage or an unknown rollout, 4 for hub or state errors (and while\n" +
			"an apply holds the rollout, unless --wait), 130 when stopped by Ctrl-C (run again to continue).",
		Example: examples(
			"rollout rollback thermostat-fw-2-4-0",
			"rollout rollback --wait 5m thermostat-fw-2-4-0   # ask a running apply to stop first",
			"rollout rollback --emulate testdata/fleets/demo.yaml --state .rollout demo-thermostat-fw"),
		Args:              exactArgs(1, "rollout name"),
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.check(); err != nil {
				return &usageError{err}
			}
			if o.emulate != "" && !o.changed("state") {
				return usagef("--emulate needs --state: the rollout to roll back lives in a state directory")
			}
			return exitWith(runRollback(e, o))
		},
	}
	o.bind(cmd.Flags(), e, false)
	cmd.Flags().DurationVar(&o.wait, "wait", 0, "when an apply holds the rollout: ask it to stop at its next safe point (Ctrl-C's stop), wait this long for it, then roll back")
	cmd.Flags().BoolVar(&o.force, "force", false, "restore prior values even on twins someone changed since the rollout (by default they are left alone)")
	return cmd
}

// runRollback rolls a rollout back on demand: the state holds the captured priors and the
// compensating method.
func runRollback(e *env, o *rollbackOptions) int {
	store, ok := existingStore(e, "rollback", o.state, o.name)
	if !ok {
		return exitInvalid
	}
	if code, ok := takeOver(e, store, o.wait); !ok {
		return code
	}
	// The state is opened before the hub is reached: an unknown rollout never dials it. A rollout of
	// a plan with hubs names them in its state, by reference only, and is rolled back on all of them.
	st, err := store.Load()
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout rollback:", err)
		return exitHub
	}
	if hubs := st.PlanHubs(); len(hubs) > 0 {
		o.plan = &plan.Plan{Name: st.Name, Hubs: hubs}
	}
	ref := stateRef{dir: o.state, name: o.name}
	return o.drive(e, "rollback", ref, func(ctx context.Context, opts engine.Options) (*engine.Result, error) {
		opts.Force = o.force
		return engine.Rollback(ctx, opts)
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
