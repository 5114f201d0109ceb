package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/iot-rollout/rollout/engine"
	"github.com/spf13/cobra"
)

// stateCopyOptions is what `rollout state push` or `pull` was asked to move.
type stateCopyOptions struct {
	dir   string // --state: where the rollout is now (push) or goes (pull)
	other string // --to or --from
	name  string
}

func newStateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "move a rollout's state between a directory and a blob container (push, pull)",
		Long: "Moves a rollout's state between backends: `push` copies it from --state to --to, `pull` from\n" +
			"--from to --state. Both hold the rollout's lock in both places while they copy, so a rollout\n" +
			"being applied is refused (exit 4), and the destination must not have the rollout already.\n" +
			"The source is left as it was: remove it yourself once the copy is in use.",
		Example: examples(
			"rollout state push thermostat-fw-2-4-0 --to https://acct.blob.core.windows.net/rollouts",
			"rollout state pull thermostat-fw-2-4-0 --from https://acct.blob.core.windows.net/rollouts --state ./.rollout",
			"AZURE_STORAGE_CONNECTION_STRING=... rollout state push fw --to http://127.0.0.1:10000/devstoreaccount1/rollouts"),
	}
	cmd.AddCommand(newStateCopyCmd(e, "push"), newStateCopyCmd(e, "pull"))
	return cmd
}

func newStateCopyCmd(e *env, verb string) *cobra.Command {
	o := &stateCopyOptions{}
	flag, usage := "to", "where to copy the rollout: a state directory or a blob container URL"
	if verb == "pull" {
		flag, usage = "from", "where to copy the rollout from: a state directory or a blob container URL"
	}
	cmd := &cobra.Command{
		Use:   verb + " [flags] NAME --" + flag + " STATE",
		Short: map[string]string{"push": "copy a rollout from --state to --to", "pull": "copy a rollout from --from to --state"}[verb],
		Long: "Copies every record of the rollout (its state, device lists, prior values, outcomes, approvals,\n" +
			"pauses) holding its lock in both places. Exit 0 when copied; 1 for bad usage, an unknown rollout\n" +
			"or a destination that has it already; 4 when a state cannot be reached or the rollout is locked.",
		Example: examples(
			"rollout state "+verb+" thermostat-fw-2-4-0 --"+flag+" https://acct.blob.core.windows.net/rollouts",
			"rollout state "+verb+" thermostat-fw-2-4-0 --"+flag+" /var/lib/rollout --state https://acct.blob.core.windows.net/rollouts/team-a"),
		Args:              exactArgs(1, "rollout name"),
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.other == "" {
				return usagef("--%s is required", flag)
			}
			o.name = args[0]
			from, to := o.dir, o.other
			if verb == "pull" {
				from, to = o.other, o.dir
			}
			return exitWith(runStateCopy(e, verb, from, to, o.name))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	cmd.Flags().StringVar(&o.other, flag, "", usage)
	return cmd
}

func runStateCopy(e *env, verb, from, to, name string) int {
	cmd := "state " + verb
	src, ok := existingStore(e, cmd, from, name)
	if !ok {
		return exitInvalid
	}
	dst, err := openState(e, to, name)
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return exitInvalid
	}
	if ok, err := dst.Exists(); err != nil || ok {
		if err != nil {
			fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
			return exitHub
		}
		fmt.Fprintf(e.stderr, "rollout %s: %s has a rollout %s already; nothing was copied\n", cmd, to, name)
		return exitInvalid
	}
	if err := engine.CopyState(context.Background(), src, dst); err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		var held *engine.LockedError
		if errors.As(err, &held) {
			fmt.Fprintf(e.stderr, "rollout %s: nothing was copied; run it again once the rollout is not being applied\n", cmd)
		}
		return exitHub
	}
	fmt.Fprintf(e.stdout, "copied rollout %s from %s to %s\n", name, from, to)
	return exitOK
}
