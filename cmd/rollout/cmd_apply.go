package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

func init() {
	commands["apply"] = command{
		summary: "run a plan against the hub (--no-wait for cron, --emulate FLEET for the embedded hub)",
		run:     runApply,
	}
}

// engFlags are the flags shared by apply and rollback: where the state lives, how to reach the hub,
// and how to report.
type engFlags struct {
	state    string
	emulate  string
	tier     string
	units    int
	hub      string
	caFile   string
	output   string
	report   string
	noWait   bool
	seed     int64
	queryLag time.Duration
	faults   string
	// keepHub keeps an emulated hub's twins and jobs beside an explicit --state (apply and rollback:
	// runs that continue a rollout); a preview leaves the state directory alone.
	keepHub bool
}

func (f *engFlags) register(fs *flag.FlagSet, e *env, withNoWait bool) {
	f.registerHub(fs, e,
		"state directory (env ROLLOUT_STATE); with --emulate, a temporary one by default, and given, it keeps the emulated hub too",
		"the hub's tier (F1, S1, S2, S3 or unlimited) to pace to; default S1 for a hub, unlimited with --emulate")
	fs.StringVar(&f.output, "output", "text", "output: text (progress bars on a terminal, plain lines otherwise) or json (one event per line)")
	fs.StringVar(&f.report, "report", "", "write the per-device outcome report (JSON) to this file")
	if withNoWait {
		fs.BoolVar(&f.noWait, "no-wait", false, "advance as far as possible now and exit (10 while waiting for a window, bake or approval); for cron")
	}
}

// registerHub registers the flags that say where the state lives and how to reach the hub, which
// plan shares with apply and rollback; each command words --state and --tier for what it does.
func (f *engFlags) registerHub(fs *flag.FlagSet, e *env, stateUsage, tierUsage string) {
	fs.StringVar(&f.state, "state", defaultStateDir(e), stateUsage)
	fs.StringVar(&f.emulate, "emulate", "", "start the embedded IoT Hub emulator with this fleet file instead of connecting to a hub")
	fs.StringVar(&f.tier, "tier", "", tierUsage)
	fs.IntVar(&f.units, "units", 1, "the hub's purchased units")
	fs.StringVar(&f.hub, "hub", "", "hub host name, authenticated with Microsoft Entra (instead of IOTHUB_CONNECTION_STRING)")
	fs.StringVar(&f.caFile, "ca-file", "", "extra CA certificate (PEM) to trust, for a local hub")
	fs.Int64Var(&f.seed, "seed", 0, "with --emulate: the emulator's seed")
	fs.DurationVar(&f.queryLag, "query-lag", 0, "with --emulate: how far twin queries lag behind the twins")
	fs.StringVar(&f.faults, "faults", "", "with --emulate: injected faults, e.g. 429=10%,503=5%")
}

// defaultStateDir is the state directory when --state is not given: $ROLLOUT_STATE, else .rollout.
func defaultStateDir(e *env) string {
	if dir := e.getenv("ROLLOUT_STATE"); dir != "" {
		return dir
	}
	return ".rollout"
}

func (f *engFlags) check(setFlags map[string]bool) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("unknown --output %q: want text or json", f.output)
	}
	if f.units < 1 {
		return fmt.Errorf("--units must be at least 1")
	}
	if f.tier != "" {
		if _, err := hubapi.TierQuotas(f.tier, f.units); err != nil {
			return fmt.Errorf("--tier: %w", err)
		}
	}
	if f.emulate != "" && f.hub != "" {
		return errors.New("--emulate and --hub exclude each other")
	}
	if f.emulate == "" {
		for _, name := range []string{"seed", "query-lag", "faults"} {
			if setFlags[name] {
				return fmt.Errorf("--%s needs --emulate", name)
			}
		}
	}
	if f.faults != "" {
		if _, err := emulator.ParseFaults(f.faults); err != nil {
			return fmt.Errorf("--faults: %w", err)
		}
	}
	return nil
}

// newFlags returns the flag set of the command name. A bad flag or -h prints "usage: " and the usage
// line, then the flags, to standard error.
func newFlags(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: "+usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseCommand parses a command's arguments with fs, flags before or after the positional arguments,
// and returns those arguments and the names of the flags given. When ok is false the command ends
// with code: exitOK after -h, exitInvalid after a bad flag, which the flag set has already reported.
func parseCommand(fs *flag.FlagSet, args []string) (pos []string, set map[string]bool, code int, ok bool) {
	pos, set, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil, exitOK, false
	}
	if err != nil {
		return nil, nil, exitInvalid, false
	}
	return pos, set, 0, true
}

// parseOne parses the arguments of a command that takes the engine flags and exactly one argument
// (what names it in the error), and checks the flags. It returns that argument and the names of the
// flags given. When ok is false the command ends with code, having said why.
func (f *engFlags) parseOne(e *env, name, usage, what string, withNoWait bool, more ...func(*flag.FlagSet)) (arg string, set map[string]bool, code int, ok bool) {
	fs := newFlags(e, name, usage)
	f.register(fs, e, withNoWait)
	for _, m := range more {
		m(fs)
	}
	pos, set, code, ok := parseCommand(fs, e.args)
	if !ok {
		return "", nil, code, false
	}
	err := f.check(set)
	if err == nil && len(pos) != 1 {
		err = errors.New("give exactly one " + what)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", name, err)
		return "", nil, exitInvalid, false
	}
	return pos[0], set, 0, true
}

// drive reaches the hub the flags name and runs one engine operation on it, rendering its events,
// and turns the outcome into the exit code. store opens the rollout's state once the hub is reached
// (an emulated hub may decide where the state lives); its error exits 4 like a hub error. Ctrl-C
// reaches op as Options.Stop, a second one cancels its context.
func (f *engFlags) drive(e *env, name string, set map[string]bool, store func(*engSession) (*engine.Store, error),
	op func(context.Context, engine.Options) (*engine.Result, error)) int {
	ctx, stop, release := interrupts(context.Background(), e)
	defer release()
	if f.report != "" {
		if err := checkReportPath(f.report); err != nil {
			fmt.Fprintf(e.stderr, "rollout %s: --report: %v\n", name, err)
			return exitInvalid
		}
	}
	sess, err := f.connect(ctx, e, set)
	if err != nil {
		return connectFailed(e, name, err)
	}
	defer sess.close()
	st, err := store(sess)
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", name, err)
		return exitHub
	}
	h := newHints(sess.stateIn, f.emulate)
	view := newView(e, f.output, h)
	res, err := op(ctx, engine.Options{Hub: sess.hub, HubName: sess.name, Store: st, Quotas: sess.quotas,
		Observer: view, NoWait: f.noWait, Stop: stop})
	view.close()
	code := finish(e, name, st, f, h, res, err)
	if sess.stateTemp && st.Exists() {
		fmt.Fprintf(e.stderr, "rollout %s: the state (and the emulated hub) lived in a temporary directory and is gone with this run; "+
			"give --state DIR to keep them for status, approve, rollback and the next run\n", name)
	}
	return code
}

// parseArgs parses flags given before or after the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, map[string]bool, error) {
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return nil, nil, err
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return pos, set, nil
}

// interrupts turns the first Ctrl-C (or SIGTERM) into a stop at the next safe point and the second into
// cancelling ctx.
func interrupts(ctx context.Context, e *env) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-sig:
				n++
				if n == 1 {
					fmt.Fprintln(e.stderr, "rollout: stopping at the next safe point (Ctrl-C again to cancel now)")
					close(stop)
				} else {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, stop, func() {
		signal.Stop(sig)
		close(done)
		cancel()
	}
}

func runApply(e *env) int {
	f := engFlags{keepHub: true}
	file, set, code, ok := f.parseOne(e, "apply", "rollout apply [flags] PLAN (- reads standard input)", "plan", true)
	if !ok {
		return code
	}
	data, err := readPlan(e, file)
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout apply:", err)
		return exitInvalid
	}
	p := loadPlan(e, "apply", file, data)
	if p == nil {
		return exitInvalid
	}
	store := func(sess *engSession) (*engine.Store, error) { return engine.OpenStore(sess.stateIn, p.Name) }
	return f.drive(e, "apply", set, store, func(ctx context.Context, o engine.Options) (*engine.Result, error) {
		return engine.Apply(ctx, p, o)
	})
}

// readPlan reads the plan in file, or standard input for "-".
func readPlan(e *env, file string) ([]byte, error) {
	if file == "-" {
		return plan.Read(e.stdin)
	}
	return plan.ReadFile(file)
}

// loadPlan loads the plan read from file for the command name. Its diagnostics go to standard error
// first, rendered as `rollout validate` renders them (source line, caret, path and hint): the
// warnings of a valid plan too, before anything runs. An invalid plan gives nil, after a pointer to
// `rollout validate`.
func loadPlan(e *env, name, file string, data []byte) *plan.Plan {
	p, diags := plan.Load(file, data)
	// The source is at hand: standard input cannot be read again, and the file may have changed.
	printDiagnosticsWith(e, diags, map[string][]byte{file: data})
	if diags.HasErrors() || p == nil {
		fmt.Fprintf(e.stderr, "rollout %s: the plan is invalid; `rollout validate` shows the details\n", name)
		return nil
	}
	return p
}

// finish writes the report and turns a run's result into the exit code.
func finish(e *env, cmd string, store *engine.Store, f *engFlags, h hints, res *engine.Result, err error) int {
	if f.report != "" && store.Exists() {
		// The rollout's outcome stands whatever happens to its report: a report that cannot be
		// written is said, never turned into a hub error. The state keeps every outcome.
		if rerr := writeReport(store, f.report); rerr != nil {
			fmt.Fprintf(e.stderr, "rollout %s: the report could not be written (%v); the state keeps every outcome: `rollout status %s --output json%s`\n",
				cmd, rerr, store.Name(), h.state)
		}
	}
	var pc *engine.PlanChangedError
	switch {
	case errors.As(err, &pc):
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		if h.hub != "" {
			fmt.Fprintf(e.stderr, "rollout %s: to undo what was applied: rollout rollback %s%s\n", cmd, pc.Name, h.hub)
		}
		return exitInvalid
	case errors.Is(err, engine.ErrStopped):
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return exitInterrupted
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(e.stderr, "rollout %s: cancelled; the state is saved, run again to continue\n", cmd)
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(e.stderr, "rollout %s: %v\n", cmd, err)
		return exitHub
	}
	code, where := outcome(e, cmd, store.Name(), h, res)
	if f.noWait {
		// A cron log's last line: where the rollout stands and why this run exits as it does.
		if code == exitOK && where != "done" {
			where += " (exit 0, progressing)"
		} else {
			where += fmt.Sprintf(" (exit %d)", code)
		}
		fmt.Fprintf(e.stderr, "rollout %s: %s\n", cmd, where)
	}
	return code
}

// outcome turns where a run left the rollout into the exit code, saying what a person does next, and
// words where the rollout stands for --no-wait's last line.
func outcome(e *env, cmd, name string, h hints, res *engine.Result) (code int, where string) {
	switch {
	case res.Status == engine.StatusHalted:
		fmt.Fprintf(e.stderr, "rollout %s: halted: %s\n", cmd, res.Reason)
		fmt.Fprintf(e.stderr, "rollout %s: undo what was applied with `rollout rollback %s%s`; a halted rollout does not resume\n",
			cmd, name, h.hub)
		return exitHalted, "halted"
	case res.Status == engine.StatusRolledBack && cmd == "rollback":
		fmt.Fprintf(e.stderr, "rollout %s: rolled back: %s\n", cmd, res.Reason)
		return exitOK, "rolled back"
	case res.Status == engine.StatusRolledBack:
		fmt.Fprintf(e.stderr, "rollout %s: rolled back: %s\n", cmd, res.Reason)
		return exitRolledBack, "rolled back"
	case res.Waiting:
		return exitWaiting, waitingFor(res, name, h)
	case res.Status == engine.StatusDone:
		return exitOK, "done"
	case res.Status == engine.StatusRollingBack:
		return exitOK, "rolling back; its jobs run on the hub"
	}
	return exitOK, progressText(res)
}

// waitingFor words what a --no-wait run that exits 10 waits for.
func waitingFor(res *engine.Result, name string, h hints) string {
	wave := "wave " + res.WaveName + " "
	switch res.Step {
	case engine.StepWaitApproval:
		return fmt.Sprintf("%swaiting for approval: rollout approve %s --wave %s%s", wave, name, res.WaveName, h.state)
	case engine.StepWaitSchedule:
		if res.Until.IsZero() {
			return wave + "waiting for a schedule window; none opens again"
		}
		return fmt.Sprintf("%swaiting for the schedule window at %s", wave, clock(res.Until))
	case engine.StepWaitBake:
		return fmt.Sprintf("%sbaking until %s", wave, clock(res.Until))
	case engine.StepVerify:
		return fmt.Sprintf("%swaiting for verify until %s", wave, clock(res.Until))
	case engine.StepPaused:
		return fmt.Sprintf("paused: rollout resume %s%s", name, h.state)
	}
	return "waiting"
}

// progressText words where a run that left jobs running stands.
func progressText(res *engine.Result) string {
	p := res.Progress
	if res.Step != engine.StepBatch || p == nil {
		return "progressing"
	}
	return fmt.Sprintf("wave %s batch %d/%d running, %d/%d done", p.WaveName, p.Batch+1, p.Batches, p.Done, p.Devices)
}

// clock renders t as a person's local time of day, with the date when it is not today.
func clock(t time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); y == time.Now().Year() && m == time.Now().Month() && d == time.Now().Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

// checkReportPath checks, before the hub is dialled, that a report can be written at path: a file
// name (not a directory) ending in .json, in a directory that exists and takes new files.
func checkReportPath(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory; give a file name such as %s", path, filepath.Join(path, "report.json"))
	}
	if ext := filepath.Ext(path); ext != ".json" {
		return fmt.Errorf("%s: the report's format comes from its extension, and .json is the one there is", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".rollout-report-*")
	if err != nil {
		return fmt.Errorf("cannot write to %s: %w", filepath.Dir(path), errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

func writeReport(store *engine.Store, path string) error {
	rep, err := engine.BuildReport(store, time.Now())
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	// Write then rename, so a reader never sees half a report.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// jsonView writes one event per line.
type jsonView struct{ enc *json.Encoder }

func (v jsonView) Event(ev engine.Event) { _ = v.enc.Encode(ev) }

// lineView writes one plain line per notable event; verify reads only when the rate changed.
type lineView struct {
	w        io.Writer
	hints    hints
	lastRate map[int]float64
}

func (v *lineView) Event(ev engine.Event) {
	if ev.Type == engine.EventVerify {
		if r, ok := v.lastRate[ev.Wave]; ok && r == ev.Rate {
			return
		}
		v.lastRate[ev.Wave] = ev.Rate
	}
	if line := describe(ev, v.hints); line != "" {
		fmt.Fprintf(v.w, "%s %s\n", ev.Time.Local().Format("15:04:05"), line)
	}
}

// describe renders an event as a plain line; "" for events too frequent for a log.
func describe(ev engine.Event, h hints) string {
	wave := fmt.Sprintf("wave %s", ev.WaveName)
	batch := fmt.Sprintf("%s batch %d", wave, ev.Batch+1)
	if ev.Batches > 0 {
		batch = fmt.Sprintf("%s batch %d/%d", wave, ev.Batch+1, ev.Batches)
	}
	counts := func(c *engine.Counts) string {
		if c == nil {
			return ""
		}
		s := fmt.Sprintf("%d/%d succeeded", c.Succeeded, c.Targeted)
		var extra []string
		if c.Failed > 0 {
			extra = append(extra, fmt.Sprintf("%d failed", c.Failed))
		}
		if c.MethodError > 0 {
			extra = append(extra, fmt.Sprintf("%d of them method non-2xx", c.MethodError))
		}
		if c.TimedOut > 0 {
			extra = append(extra, fmt.Sprintf("%d timed out", c.TimedOut))
		}
		if c.Unreachable > 0 {
			extra = append(extra, fmt.Sprintf("%d unreachable", c.Unreachable))
		}
		if len(extra) > 0 {
			s += ", " + strings.Join(extra, ", ")
		}
		return s
	}
	switch ev.Type {
	case engine.EventStarted:
		return fmt.Sprintf("rollout %s: %s", ev.Rollout, plural(ev.Waves, "wave"))
	case engine.EventWaiting:
		switch ev.Reason {
		case "approval":
			return fmt.Sprintf("%s: waiting for approval (rollout approve %s --wave %s%s)", wave, ev.Rollout, ev.WaveName, h.state)
		case "paused":
			return fmt.Sprintf("paused before %s (rollout resume %s%s)", wave, ev.Rollout, h.state)
		default:
			return fmt.Sprintf("%s: waiting for the %s until %s", wave, ev.Reason, ev.Until.Local().Format(time.RFC3339))
		}
	case engine.EventReplanned:
		return fmt.Sprintf("the plan was edited before any job was created (%s): the rollout starts over with it", ev.Reason)
	case engine.EventApproved:
		s := fmt.Sprintf("%s: approved by %s at %s", wave, ev.By, ev.At.Local().Format(time.RFC3339))
		if ev.Reason != "" {
			s += ": " + ev.Reason
		}
		return s
	case engine.EventWaveStarted:
		return fmt.Sprintf("%s: %s in %s", wave, plural(ev.Devices, "device"), plural(ev.Batches, "batch"))
	case engine.EventJobCreated:
		return fmt.Sprintf("%s: job %s created for %s", batch, ev.Job, plural(ev.Devices, "device"))
	case engine.EventJobAttached:
		return fmt.Sprintf("%s: job %s re-attached", batch, ev.Job)
	case engine.EventBatchDone:
		return fmt.Sprintf("%s: %s", batch, counts(ev.Counts))
	case engine.EventGatePassed:
		if ev.Batch < 0 {
			return fmt.Sprintf("%s: success gate passed (%s)", wave, counts(ev.Counts))
		}
		return ""
	case engine.EventGateFailed:
		return fmt.Sprintf("%s: gate failed: %s", wave, ev.Reason)
	case engine.EventVerify:
		return fmt.Sprintf("%s: verify %d/%d devices (%.1f%%)", wave, ev.Done, ev.Devices, ev.Rate*100)
	case engine.EventWaveDone:
		return fmt.Sprintf("%s: done", wave)
	case engine.EventHalted:
		return fmt.Sprintf("halted: %s", ev.Reason)
	case engine.EventRollbackStarted:
		return fmt.Sprintf("rolling back: %s", ev.Reason)
	case engine.EventRollbackBatch:
		c := ev.Counts
		s := fmt.Sprintf("%s rolled back: %s restored, %d failed", batch, plural(c.Succeeded, "device"), c.Failed)
		if ev.Conflicts > 0 {
			s += fmt.Sprintf(", %d left alone (changed since the rollout)", ev.Conflicts)
		}
		return s
	case engine.EventRolledBack:
		s := fmt.Sprintf("rolled back %s", plural(ev.Devices, "device"))
		if ev.Conflicts > 0 {
			s += fmt.Sprintf("; %s left alone: someone changed what the rollout wrote (the report lists them; `rollout rollback %s --force%s` restores them anyway)",
				plural(ev.Conflicts, "device"), ev.Rollout, h.hub)
		}
		return s
	case engine.EventDone:
		return "rollout done"
	case engine.EventStopped:
		return "stopped at a safe point; run the same command again to continue"
	}
	return ""
}
