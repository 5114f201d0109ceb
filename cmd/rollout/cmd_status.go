package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/spf13/cobra"
)

// statusOptions is what `rollout status` was asked to show.
type statusOptions struct {
	dir    string
	output string
	name   string // "": every rollout under dir
	// watch follows rollout name until it ends, reading its state every interval.
	watch    bool
	interval time.Duration
}

func newStatusCmd(e *env) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [flags] [NAME]",
		Short: "show where a rollout stands, per wave and batch, from its state alone",
		Long: "Without NAME, lists the rollouts under the state directory, one line each; with NAME, details one:\n" +
			"its waves and batches, who applies it now, what it waits for. It reads the state alone and needs no hub.\n" +
			"--watch follows one rollout live, from its state alone (so from any machine that reads a shared state),\n" +
			"and exits when the rollout ends: 0 done, 2 halted, 3 rolled back; 130 on Ctrl-C.",
		Example: examples(
			"rollout status",
			"rollout status thermostat-fw-2-4-0",
			"rollout status --state /var/lib/rollout --output json thermostat-fw-2-4-0",
			"rollout status --watch --state https://acct.blob.core.windows.net/rollouts thermostat-fw-2-4-0"),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("give at most one rollout name")
			}
			return nil
		},
		ValidArgsFunction: completeRollouts(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return usagef("unknown --output %q: want text or json", o.output)
			}
			if len(args) == 1 {
				o.name = args[0]
			}
			if o.watch {
				if o.name == "" {
					return usagef("--watch follows one rollout: give its name")
				}
				if o.interval < 100*time.Millisecond {
					return usagef("--interval must be at least 100ms")
				}
				return exitWith(watchStatus(e, o))
			}
			return exitWith(runStatus(e, o))
		},
	}
	stateFlag(cmd.Flags(), e, &o.dir)
	cmd.Flags().StringVar(&o.output, "output", "text", "output: text or json")
	cmd.Flags().BoolVar(&o.watch, "watch", false, "follow the rollout live until it ends (exit 0 done, 2 halted, 3 rolled back)")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "with --watch: how often the state is read")
	return cmd
}

// runStatus lists the rollouts under the state directory, or details one. It exits 0, 1 for an
// unknown rollout, 4 when the state cannot be read.
func runStatus(e *env, o *statusOptions) int {
	names := []string{o.name}
	if o.name == "" {
		b, err := stateBackend(e, o.dir)
		if err == nil {
			names, err = b.Names(context.Background())
		}
		if err != nil {
			fmt.Fprintln(e.stderr, "rollout status:", err)
			return exitHub
		}
		if len(names) == 0 && o.output == "text" {
			fmt.Fprintf(e.stdout, "no rollouts under %s\n", o.dir)
			return exitOK
		}
	}
	var views []statusView
	for _, name := range names {
		v, err := readStatus(e, o.dir, name)
		if errors.Is(err, engine.ErrNoState) {
			fmt.Fprintf(e.stderr, "rollout status: no rollout %q under %s\n", name, o.dir)
			return exitInvalid
		}
		if err != nil {
			fmt.Fprintln(e.stderr, "rollout status:", err)
			return exitHub
		}
		views = append(views, v)
	}
	if o.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if o.name != "" {
			// The state as it is kept, with a rollout over several hubs' per-hub sums beside it.
			_ = enc.Encode(struct {
				*engine.State
				Hubs []engine.HubSummary `json:"hubs,omitempty"`
			}{views[0].State, views[0].hubs})
		} else {
			var states []*engine.State
			for _, v := range views {
				states = append(states, v.State)
			}
			_ = enc.Encode(states)
		}
		return exitOK
	}
	h := newHints(o.dir, "")
	if o.name == "" {
		for _, v := range views {
			fmt.Fprintf(e.stdout, "%-40s %-12s %s\n", v.Name, v.status(), v.where(h))
		}
		return exitOK
	}
	writeStatus(e.stdout, views[0], h)
	return exitOK
}

// statusView is a rollout's state with what status reads beside it: who holds its lock, and its
// approvals.
type statusView struct {
	*engine.State
	holder    engine.Holder
	held      bool
	approvals map[string]engine.Approval
	pause     *engine.Control // nil: not paused
	// hubs sums a rollout of a plan with hubs per hub, from its device outcomes (nil without hubs).
	hubs []engine.HubSummary
}

// readStatus reads what status shows of rollout name under dir: the one place the CLI reads a
// rollout's state for a person, so that status and --watch read it the same way.
func readStatus(e *env, dir, name string) (statusView, error) {
	store, err := openState(e, dir, name)
	if err != nil {
		return statusView{}, err
	}
	if ok, err := store.Exists(); err != nil || !ok {
		if err == nil {
			err = engine.ErrNoState
		}
		return statusView{}, err
	}
	v := statusView{}
	if v.State, err = store.Load(); err != nil {
		return v, err
	}
	if v.holder, v.held, err = store.Holder(); err != nil {
		return v, err
	}
	if v.approvals, err = engine.Approvals(store); err != nil {
		return v, err
	}
	if c, ok, err := engine.Paused(store); err != nil {
		return v, err
	} else if ok {
		v.pause = &c
	}
	if len(v.Hubs) > 0 {
		// The devices' hubs are in their ids, and their outcomes in the bulk records the report reads.
		rep, err := engine.BuildReport(store, time.Now())
		if err != nil {
			return v, err
		}
		v.hubs = rep.Hubs
	}
	return v, nil
}

// status is the rollout's status as a person reads it: a rollout recorded as running that no apply
// runs is stopped where it stands.
func (v statusView) status() string {
	if (v.Status == engine.StatusRunning || v.Status == engine.StatusRollingBack) && !v.held {
		return "stopped"
	}
	return string(v.Status)
}

// where summarizes a rollout's position in a few words.
func (v statusView) where(h hints) string {
	if v.Reason != "" && v.Status != engine.StatusRunning {
		return v.Reason
	}
	if w := v.waiting(h); w != "" {
		return w
	}
	for _, w := range v.Waves {
		if w.Status != engine.StatusDone {
			return fmt.Sprintf("wave %s %s", w.Name, w.Status)
		}
	}
	return "every wave done"
}

// waiting says what the rollout waits for and until when, from the wait its last run recorded; ""
// when it waits for nothing.
func (v statusView) waiting(h hints) string {
	wt := v.Waiting
	if wt == nil {
		return ""
	}
	switch wt.Reason {
	case "approval":
		if a, ok := v.approvals[wt.Wave]; ok {
			return fmt.Sprintf("wave %s approved by %s at %s; the next apply starts it", wt.Wave, a.By, stamp(a.At))
		}
		return fmt.Sprintf("wave %s waits for approval: rollout approve %s --wave %s%s", wt.Wave, v.Name, wt.Wave, h.state)
	case "schedule":
		if wt.Until.IsZero() {
			return fmt.Sprintf("wave %s waits for a schedule window; none opens again", wt.Wave)
		}
		return fmt.Sprintf("wave %s waits for its schedule window, which opens at %s", wt.Wave, stamp(wt.Until))
	case "bake":
		return fmt.Sprintf("wave %s bakes until %s", wt.Wave, stamp(wt.Until))
	case "retry":
		return fmt.Sprintf("wave %s retries devices at %s", wt.Wave, stamp(wt.Until))
	case "paused":
		return fmt.Sprintf("paused before wave %s: rollout resume %s%s", wt.Wave, v.Name, h.state)
	case "verify":
		for _, w := range v.Waves {
			if w.Name == wt.Wave {
				return fmt.Sprintf("wave %s verifies: %.1f%% of %s satisfy it, %.0f%% needed by %s", wt.Wave,
					w.VerifyRate*100, plural(w.DeviceCount, "device"), wt.MinRate*100, stamp(wt.Until))
			}
		}
	}
	return fmt.Sprintf("wave %s waits (%s)", wt.Wave, wt.Reason)
}

// stamp renders a recorded time for status.
func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05Z07:00") }

func writeStatus(w io.Writer, v statusView, h hints) {
	st := v.State
	fmt.Fprintf(w, "rollout %s: %s (plan %.12s, %s)\n", st.Name, v.status(), st.PlanHash, st.Kind)
	switch {
	case v.held:
		fmt.Fprintf(w, "  applied now by pid %d on %s since %s\n", v.holder.PID, v.holder.Host, stamp(v.holder.Since))
	case v.status() == "stopped":
		hub := ""
		if fleet, ok := strings.CutPrefix(st.Hub, emulatedPrefix); ok {
			hub = emulateArgs(fleet)
		}
		fmt.Fprintf(w, "  no apply is running: `rollout apply %s%s%s` continues it\n", planArg(st), hub, h.state)
	}
	if st.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", st.Reason)
	}
	if p := v.pause; p != nil {
		fmt.Fprintf(w, "  paused by %s at %s", p.By, stamp(p.At))
		if p.Reason != "" {
			fmt.Fprintf(w, ": %s", p.Reason)
		}
		fmt.Fprintf(w, "; `rollout resume %s%s` lifts it\n", st.Name, h.state)
	}
	if st.Status == engine.StatusRunning {
		if wt := v.waiting(h); wt != "" {
			fmt.Fprintf(w, "  waiting: %s\n", wt)
		}
	}
	fmt.Fprintf(w, "  started %s, updated %s\n", stamp(st.Created), stamp(st.Updated))
	for _, h := range v.hubs {
		fmt.Fprintf(w, "  hub %-15s %s: %d succeeded, %d failed, %d pending", h.Hub, plural(h.Devices, "device"), h.Succeeded, h.Failed, h.Pending)
		if h.RolledBack > 0 {
			fmt.Fprintf(w, ", %d rolled back", h.RolledBack)
		}
		fmt.Fprintln(w)
	}
	for _, wv := range st.Waves {
		writeWave(w, v, wv)
	}
	for _, a := range st.Accepted {
		fmt.Fprintf(w, "  halt of wave %s accepted by %s at %s: %s (%s accepted; the halt: %s)\n",
			a.Wave, a.By, stamp(a.At), a.Reason, plural(a.Failures, "failure"), a.Halt)
	}
	if rb := st.Rollback; rb != nil {
		state := "in progress"
		if rb.Done {
			state = "done"
		}
		fmt.Fprintf(w, "  rollback %s: %s restored, %d failed", state, plural(rb.Devices, "device"), rb.Failed)
		if rb.Conflicts > 0 {
			fmt.Fprintf(w, ", %d left alone (changed since the rollout; see the report)", rb.Conflicts)
		}
		fmt.Fprintln(w)
	}
}

// writeWave writes one wave's line and its batches' lines.
func writeWave(w io.Writer, v statusView, wv engine.Wave) {
	c := wv.Counts
	fmt.Fprintf(w, "  wave %-14s %-10s", wv.Name, wv.Status)
	if wv.Resolved {
		fmt.Fprintf(w, " %s, %s: %d succeeded, %d failed, %d timed out, %d unreachable",
			plural(wv.DeviceCount, "device"), plural(len(wv.Batches), "batch"), c.Succeeded, c.Failed, c.TimedOut, c.Unreachable)
	}
	if wv.VerifyReads > 0 {
		fmt.Fprintf(w, "; verify %.1f%% after %s", wv.VerifyRate*100, plural(wv.VerifyReads, "read"))
	}
	if a, ok := v.approvals[wv.Name]; ok {
		fmt.Fprintf(w, "; approved by %s%s at %s", a.By, onHost(a.By, a.Host), stamp(a.At))
		if a.Early {
			fmt.Fprint(w, " (in advance, before the rollout reached the gate)")
		}
		if a.Reason != "" {
			fmt.Fprintf(w, ": %s", a.Reason)
		}
	} else if wv.Gated && wv.Status == engine.StatusPending {
		fmt.Fprint(w, "; needs approval")
	}
	fmt.Fprintln(w)
	for bi, b := range wv.Batches {
		if b.Status == engine.StatusPending && len(b.Jobs) == 0 {
			continue
		}
		writeBatch(w, bi, len(wv.Batches), b)
	}
}

// writeBatch writes batch bi of n: its jobs, its retries, whether it was rolled back.
func writeBatch(w io.Writer, bi, n int, b engine.Batch) {
	fmt.Fprintf(w, "    batch %d/%d %-8s %s", bi+1, n, b.Status, plural(b.End-b.Start, "device"))
	writeJobs(w, b.Jobs)
	if r := len(b.Retries); r > 0 {
		last := b.Retries[r-1]
		fmt.Fprintf(w, "  %s, the last over %s", plural(r, "retry attempt"), plural(last.Devices, "device"))
		if last.Waited > 0 {
			fmt.Fprintf(w, " (%d not connected)", last.Waited)
		}
		writeJobs(w, last.Jobs)
	}
	if b.RolledBack {
		fmt.Fprint(w, "  rolled back")
	}
	fmt.Fprintln(w)
}

// writeJobs writes each job's id and status on a batch's line.
func writeJobs(w io.Writer, jobs []engine.Job) {
	for _, j := range jobs {
		fmt.Fprintf(w, "  job %s", j.ID)
		if j.Status != "" {
			fmt.Fprintf(w, " (%s)", j.Status)
		}
	}
}

// planArg names the plan file a rollout was started from, for a hint, or PLAN when it is unknown.
func planArg(st *engine.State) string {
	if st.PlanFile == "" || st.PlanFile == "-" {
		return "PLAN"
	}
	return shellQuote(st.PlanFile)
}

// onHost says where a record was made, unless who names the host already (user@host).
func onHost(who, host string) string {
	if host == "" || strings.HasSuffix(who, "@"+host) {
		return ""
	}
	return " on " + host
}
