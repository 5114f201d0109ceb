package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/spf13/cobra"
)

// controlOptions is what pause, resume or promote was asked to record.
type controlOptions struct {
	byFlags
	dir    string
	name   string
	accept string // resume --accept: why a halt's failures are accepted
}

// controlHelp is the help of pause, resume and promote.
var controlHelp = map[string]struct{ short, long, example string }{
	"pause": {"hold a rollout at its next safe point until rollout resume (rollout pause NAME)",
		"Records a pause: a running apply, or the next --no-wait run, holds at its next safe point (no new\n" +
			"batch, no new wave) until `rollout resume`. It works while an apply runs.",
		examples("rollout pause thermostat-fw-2-4-0", "rollout pause thermostat-fw-2-4-0 --reason 'support tickets rising'",
			"rollout pause --state /var/lib/rollout thermostat-fw-2-4-0 --by oncall")},
	"resume": {"lift a pause, or accept a halt's failures and continue (rollout resume NAME [--accept REASON])",
		"Lifts a pause: a running apply, or the next one, continues from where it held.\n\n" +
			"With --accept REASON, accepts the failures behind a halt (a failed gate or a tripped budget) and\n" +
			"records who accepted how many and why: the next apply continues from the next batch of the wave\n" +
			"that halted (from its bake and verify when its end gate failed, from its bake's end when its\n" +
			"verify failed), and the gates and the budget count only what comes after.",
		examples("rollout resume thermostat-fw-2-4-0", "rollout resume --state /var/lib/rollout thermostat-fw-2-4-0",
			"rollout resume thermostat-fw-2-4-0 --by oncall --reason 'tickets explained'",
			"rollout resume thermostat-fw-2-4-0 --accept '3 units on the bench, known bad flash'")},
	"promote": {"release the current wave's approval gate, or end its bake early (rollout promote NAME)",
		"Moves the rollout on at its current wave: releases the approval gate it waits at, or ends its bake\n" +
			"early. It works while an apply runs.",
		examples("rollout promote thermostat-fw-2-4-0", "rollout promote thermostat-fw-2-4-0 --reason 'metrics are clean'",
			"rollout promote --state /var/lib/rollout thermostat-fw-2-4-0")},
}

func newControlCmd(e *env, name string) *cobra.Command {
	o := &controlOptions{}
	help := controlHelp[name]
	cmd := &cobra.Command{
		Use:     name + " [flags] NAME",
		Short:   help.short,
		Long:    help.long + "\nExit 0; 1 for an unknown rollout, or a word that means nothing now; 4 when the state cannot be written.",
		Example: help.example,
		Args:    exactArgs(1, "rollout name"),
		// ValidArgsFunction offers the rollouts under --state.
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if name == "resume" && cmd.Flags().Changed("accept") && o.accept == "" {
				return usagef("--accept needs a reason: why the halt's failures are accepted")
			}
			return exitWith(runControl(e, name, o))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	o.bind(cmd.Flags(), "why, for the record")
	if name == "resume" {
		cmd.Flags().StringVar(&o.accept, "accept", "", "accept the failures behind a halt, for this reason, and continue")
	}
	return cmd
}

// runControl runs pause, resume or promote: a record beside the rollout's state, which a running
// apply (or the next --no-wait run) reads at its next step.
func runControl(e *env, name string, o *controlOptions) int {
	store, ok := existingStore(e, name, o.dir, o.name)
	if !ok {
		return exitInvalid
	}
	who, host := whoOf(e, store, o.by)
	c := engine.Control{By: who, Host: host, At: time.Now(), Reason: o.reason}
	var err error
	h := newHints(o.dir, "")
	var done string
	switch {
	case name == "pause":
		err = engine.Pause(store, c)
		done = fmt.Sprintf("paused rollout %s: it holds at its next safe point; `rollout resume %s%s` lifts it", o.name, o.name, h.state)
	case name == "resume" && o.accept != "":
		var a engine.Acceptance
		a, err = engine.Accept(store, engine.Acceptance{By: c.By, At: c.At, Reason: o.accept})
		done = fmt.Sprintf("accepted the halt of rollout %s (%s), %s: the next apply continues past the gate that failed",
			o.name, a.Halt, plural(a.Failures, "failure"))
	case name == "resume":
		err = engine.Resume(store)
		done = fmt.Sprintf("resumed rollout %s: a running apply, or the next one, continues", o.name)
	case name == "promote":
		var wave string
		wave, err = engine.Promote(store, c)
		done = fmt.Sprintf("promoted wave %s of rollout %s: its gate is released, or its bake ends, at the next step", wave, o.name)
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
