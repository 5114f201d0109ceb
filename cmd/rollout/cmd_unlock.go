package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/statestore"
	"github.com/spf13/cobra"
)

// unlockOptions is what `rollout unlock` was asked to do.
type unlockOptions struct {
	dir  string
	name string
	yes  bool
}

func newUnlockCmd(e *env) *cobra.Command {
	o := &unlockOptions{}
	cmd := &cobra.Command{
		Use:   "unlock [flags] NAME",
		Short: "break a shared state's lease left by a dead holder (shows the holder first)",
		Long: "Shows who holds a rollout's lock (pid, host, since) and the lease's state, then breaks the lease\n" +
			"of a shared (blob) state once you confirm, or at once with --yes. Rarely needed: a holder that\n" +
			"dies frees its lease within 60 s by itself, and `apply --lock-timeout 70s` waits for that.\n" +
			"Breaking a live holder harms no data: its next state write fails and it stops before its next\n" +
			"hub call. A state directory's lock is freed by the kernel when its holder dies, so there is\n" +
			"nothing to break: unlock names the holder to stop instead.\n" +
			"Exit 0 when the rollout is unlocked (or was not locked); 1 for an unknown rollout or a refused\n" +
			"confirmation; 4 when the state cannot be reached.",
		Example: examples(
			"rollout unlock --state https://acct.blob.core.windows.net/rollouts thermostat-fw-2-4-0",
			"rollout unlock --state https://acct.blob.core.windows.net/rollouts thermostat-fw-2-4-0 --yes   # from a script",
			"rollout unlock thermostat-fw-2-4-0   # a state directory: says which process to stop"),
		Args:              exactArgs(1, "rollout name"),
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return exitWith(runUnlock(e, o))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "break the lease without asking")
	return cmd
}

func runUnlock(e *env, o *unlockOptions) int {
	// Not existingStore: a holder that died between taking the lease and writing the rollout's first
	// record leaves a lease on a rollout that has no state yet, and it is as much in the way.
	store, err := openState(e, o.dir, o.name)
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout unlock:", err)
		return exitInvalid
	}
	h, held, err := store.Holder()
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout unlock:", err)
		return exitHub
	}
	br, breakable := store.Records().(statestore.Breaker)
	lease := ""
	if breakable {
		if lease, err = br.LeaseState(context.Background()); err != nil {
			fmt.Fprintln(e.stderr, "rollout unlock:", err)
			return exitHub
		}
	}
	if lease == "none" || !breakable && !held && !hasState(store) {
		fmt.Fprintf(e.stderr, "rollout unlock: no rollout %q under %s\n", o.name, o.dir)
		return exitInvalid
	}
	fmt.Fprintln(e.stdout, holderLine(o.name, h, held, lease))
	switch {
	case !held:
		fmt.Fprintf(e.stdout, "rollout %s is not locked: nothing to do\n", o.name)
		return exitOK
	case !breakable:
		fmt.Fprintf(e.stderr, "rollout unlock: a state directory's lock is held by a live process; stop it (Ctrl-C, or kill -INT %d on %s) and its lock is freed\n",
			h.PID, h.Host)
		return exitInvalid
	}
	if !o.yes && !confirm(e, fmt.Sprintf("Break the lease of rollout %s? Type yes: ", o.name)) {
		fmt.Fprintln(e.stderr, "rollout unlock: not confirmed; nothing was changed")
		return exitInvalid
	}
	if err := br.Break(context.Background()); err != nil {
		fmt.Fprintln(e.stderr, "rollout unlock:", err)
		return exitHub
	}
	fmt.Fprintf(e.stdout, "broke the lease of rollout %s: the next apply takes it; if its holder still runs, it stops before its next hub call\n", o.name)
	return exitOK
}

// holderLine says who holds a rollout's lock, as unlock and status show it.
func holderLine(name string, h statestore.Holder, held bool, lease string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout %s: ", name)
	switch {
	case h.PID == 0 && !held:
		b.WriteString("no holder")
	case h.PID == 0:
		b.WriteString("held by an unknown holder")
	default:
		state := "holds it"
		if !held {
			state = "held it last"
		}
		fmt.Fprintf(&b, "pid %d on %s %s, since %s", h.PID, h.Host, state, h.Since.UTC().Format(time.RFC3339))
	}
	if lease != "" {
		fmt.Fprintf(&b, " (lease: %s)", lease)
	}
	return b.String()
}

// confirm asks a question on standard error and reads the answer from standard input.
func confirm(e *env, question string) bool {
	fmt.Fprint(e.stderr, question)
	line, _ := bufio.NewReader(e.stdin).ReadString('\n')
	return strings.TrimSpace(strings.ToLower(line)) == "yes"
}
