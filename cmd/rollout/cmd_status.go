package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/iot-rollout/rollout/engine"
)

func init() {
	commands["status"] = command{
		summary: "show where a rollout stands, per wave and batch, from its state alone",
		run:     runStatus,
	}
}

// stateDirFlag registers --state with its environment default.
func stateDirFlag(fs *flag.FlagSet, e *env) *string {
	return fs.String("state", defaultStateDir(e), "state directory (env ROLLOUT_STATE)")
}

// runStatus lists the rollouts under the state directory, or details one. It exits 0, 1 for bad
// usage, 4 when the state cannot be read.
func runStatus(e *env) int {
	fs := newFlags(e, "status", "rollout status [--state DIR] [--output text|json] [NAME]")
	dir := stateDirFlag(fs, e)
	output := fs.String("output", "text", "output: text or json")
	pos, _, code, ok := parseCommand(fs, e.args)
	if !ok {
		return code
	}
	if len(pos) > 1 || (*output != "text" && *output != "json") {
		fs.Usage()
		return exitInvalid
	}
	names := pos
	if len(names) == 0 {
		var err error
		names, err = engine.Names(*dir)
		if err != nil {
			fmt.Fprintln(e.stderr, "rollout status:", err)
			return exitHub
		}
		if len(names) == 0 && *output == "text" {
			fmt.Fprintf(e.stdout, "no rollouts under %s\n", *dir)
			return exitOK
		}
	}
	var states []*engine.State
	var approvals map[string]engine.Approval
	for _, name := range names {
		store, err := engine.OpenStore(*dir, name)
		if err == nil {
			var st *engine.State
			st, err = store.Load()
			states = append(states, st)
			if err == nil && len(pos) == 1 {
				approvals, err = engine.Approvals(store)
			}
		}
		if errors.Is(err, engine.ErrNoState) {
			fmt.Fprintf(e.stderr, "rollout status: no rollout %q under %s\n", name, *dir)
			return exitInvalid
		}
		if err != nil {
			fmt.Fprintln(e.stderr, "rollout status:", err)
			return exitHub
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if len(pos) == 1 {
			_ = enc.Encode(states[0])
		} else {
			_ = enc.Encode(states)
		}
		return exitOK
	}
	if len(pos) == 0 {
		for _, st := range states {
			fmt.Fprintf(e.stdout, "%-40s %-12s %s\n", st.Name, st.Status, where(st))
		}
		return exitOK
	}
	writeStatus(e.stdout, states[0], approvals)
	return exitOK
}

// where summarizes a rollout's position in a few words.
func where(st *engine.State) string {
	if st.Reason != "" && st.Status != engine.StatusRunning {
		return st.Reason
	}
	for _, w := range st.Waves {
		if w.Status != engine.StatusDone {
			return fmt.Sprintf("wave %s %s", w.Name, w.Status)
		}
	}
	return "every wave done"
}

func writeStatus(w io.Writer, st *engine.State, approvals map[string]engine.Approval) {
	fmt.Fprintf(w, "rollout %s: %s (plan %.12s, %s)\n", st.Name, st.Status, st.PlanHash, st.Kind)
	if st.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", st.Reason)
	}
	fmt.Fprintf(w, "  started %s, updated %s\n", st.Created.Format("2006-01-02 15:04:05Z07:00"), st.Updated.Format("2006-01-02 15:04:05Z07:00"))
	for _, wv := range st.Waves {
		c := wv.Counts
		fmt.Fprintf(w, "  wave %-14s %-10s", wv.Name, wv.Status)
		if wv.Resolved {
			fmt.Fprintf(w, " %s, %s: %d succeeded, %d failed, %d timed out, %d unreachable",
				plural(wv.DeviceCount, "device"), plural(len(wv.Batches), "batch"), c.Succeeded, c.Failed, c.TimedOut, c.Unreachable)
		}
		if wv.VerifyReads > 0 {
			fmt.Fprintf(w, "; verify %.1f%% after %s", wv.VerifyRate*100, plural(wv.VerifyReads, "read"))
		}
		if a, ok := approvals[wv.Name]; ok {
			fmt.Fprintf(w, "; approved by %s at %s", a.By, a.At.Format("2006-01-02 15:04:05Z07:00"))
		}
		fmt.Fprintln(w)
		for bi, b := range wv.Batches {
			if b.Status == engine.StatusPending && len(b.Jobs) == 0 {
				continue
			}
			fmt.Fprintf(w, "    batch %d/%d %-8s %s", bi+1, len(wv.Batches), b.Status, plural(b.End-b.Start, "device"))
			for _, j := range b.Jobs {
				fmt.Fprintf(w, "  job %s", j.ID)
				if j.Status != "" {
					fmt.Fprintf(w, " (%s)", j.Status)
				}
			}
			if b.RolledBack {
				fmt.Fprint(w, "  rolled back")
			}
			fmt.Fprintln(w)
		}
	}
	if rb := st.Rollback; rb != nil {
		state := "in progress"
		if rb.Done {
			state = "done"
		}
		fmt.Fprintf(w, "  rollback %s: %s restored, %d failed\n", state, plural(rb.Devices, "device"), rb.Failed)
	}
}
