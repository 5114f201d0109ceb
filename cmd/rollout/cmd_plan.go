package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/spf13/cobra"
)

// planOptions is what `rollout plan` was asked to do; the hub flags are apply's (see hubFlags).
type planOptions struct {
	hub           hubFlags
	file          string
	format        string
	failOnWarning bool
	maxFirstWave  int
	maxQueries    int
	sample        int
	estimateTier  string
	estimate      hubapi.Quotas
}

var planFormats = []string{"text", "json", "markdown", "github"}

func newPlanCmd(e *env) *cobra.Command {
	o := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan [flags] PLAN",
		Short: "preview a plan against the hub: devices per wave, twin diff, findings, time estimate",
		Long: "Previews a plan against the hub without changing anything: the exact devices per wave, overlaps, the\n" +
			"twin diff, findings (configurations that would undo the rollout, empty waves, policy) and a time\n" +
			"estimate. A plan with hubs is previewed hub by hub, each at its tier (the plan's, else --estimate-tier),\n" +
			"then in total. PLAN - reads standard input. Exit 0 when it ran, 2 with --fail-on-warning and findings,\n" +
			"1 for a bad plan or usage, 4 when the hub or the state cannot be read.",
		Example: examples(
			"rollout plan --emulate testdata/fleets/demo.yaml plans/demo/demo.yaml",
			"rollout plan --format markdown --fail-on-warning plan.yaml > comment.md",
			"rollout plan --hub contoso.azure-devices.net --estimate-tier S2 --max-first-wave 50 plan.yaml"),
		Args: exactArgs(1, "plan"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			if err := o.check(); err != nil {
				return &usageError{err}
			}
			return exitWith(runPlan(e, o))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.format, "format", "text", "output format: "+strings.Join(planFormats, ", ")+" (markdown is a pull-request comment)")
	fs.BoolVar(&o.failOnWarning, "fail-on-warning", false, "exit 2 when the preview has findings")
	fs.IntVar(&o.maxFirstWave, "max-first-wave", 0, "policy: a finding when the first wave takes more devices than this (0: no limit)")
	fs.IntVar(&o.maxQueries, "max-queries", 100, "at most this many queries for resolving waves by id (percent waves and the waves they overlap); over it, their counts are estimated")
	fs.IntVar(&o.sample, "sample", 5, "device ids shown per wave")
	fs.StringVar(&o.estimateTier, "estimate-tier", "", "tier the duration estimate assumes (default: --tier, or S1)")
	o.hub.bind(fs, e,
		"state directory (env ROLLOUT_STATE): an existing rollout's state is shown, never changed",
		"the hub's tier (F1, S1, S2, S3 or unlimited) to pace queries to; default S1 for a hub, unlimited with --emulate")
	return cmd
}

// check says what is wrong with the options, before any hub is dialled, and decides the tier the
// estimate assumes.
func (o *planOptions) check() error {
	f := &o.hub
	if err := f.check(); err != nil {
		return err
	}
	if !contains(planFormats, o.format) {
		return fmt.Errorf("unknown --format %q: want one of %s", o.format, strings.Join(planFormats, ", "))
	}
	if o.maxFirstWave < 0 || o.maxQueries < 1 || o.sample < 0 {
		return errors.New("--max-first-wave and --sample must not be negative, --max-queries at least 1")
	}
	tier := o.estimateTier
	if tier == "" {
		tier = f.tier
	}
	if tier == "" {
		tier = "S1"
	}
	var err error
	if o.estimate, err = hubapi.TierQuotas(tier, f.units); err != nil {
		return fmt.Errorf("--estimate-tier: %w", err)
	}
	return nil
}

// runPlan previews a plan.
func runPlan(e *env, o *planOptions) int {
	data, err := readPlan(e, o.file)
	if err != nil {
		fmt.Fprintf(e.stderr, "rollout plan: %s: %v\n", o.file, err)
		return exitInvalid
	}
	p := loadPlan(e, "plan", o.file, data)
	if p == nil {
		return exitInvalid
	}
	o.hub.plan = p

	// A preview changes nothing, so the first Ctrl-C may simply cancel it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sess, err := o.hub.connect(ctx, e)
	if err != nil {
		return connectFailed(e, "plan", err)
	}
	defer sess.close()
	var store *engine.Store
	// A state directory that does not exist holds no rollout; the preview must not create it. An
	// emulated hub without --state has no rollout to show.
	_, statErr := os.Stat(o.hub.state)
	if (statErr == nil || sharedState(o.hub.state)) && (o.hub.emulate == "" || o.hub.changed("state")) {
		if store, err = openState(e, o.hub.state, p.Name); err != nil {
			fmt.Fprintln(e.stderr, "rollout plan:", err)
			return exitHub
		}
	}
	pv, err := engine.PreviewPlan(ctx, p, engine.PreviewOptions{Hub: sess.hub, Quotas: sess.quotas,
		Estimate: o.estimate, Store: store, SampleSize: o.sample, MaxFirstWave: o.maxFirstWave,
		MaxQueries: o.maxQueries, Hubs: o.hubTargets(p, sess)})
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout plan:", err)
		return exitHub
	}
	if o.sample == 0 {
		for i := range pv.Waves {
			pv.Waves[i].Sample = []string{}
		}
		for _, h := range pv.Hubs {
			for i := range h.Waves {
				h.Waves[i].Sample = []string{}
			}
		}
	}
	switch o.format {
	case "json":
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(pv)
	case "markdown":
		err = writePlanMarkdown(e.stdout, p, pv)
	case "github":
		err = writePlanGithub(e.stdout, p, pv)
	default:
		err = writePlanText(e.stdout, p, pv)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "rollout plan:", err)
		return exitHub
	}
	if o.failOnWarning && len(pv.Findings) > 0 {
		return exitFindings
	}
	return exitOK
}

// errWriter keeps the first write error so that rendering code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) printf(format string, args ...any) {
	if w.err == nil {
		_, w.err = fmt.Fprintf(w.w, format, args...)
	}
}

func kindText(kind engine.ActionKind) string {
	if kind == engine.KindDirectMethod {
		return "direct method"
	}
	return "twin update"
}

// valueText renders a current value of a diff; absent properties get a word, not "".
func valueText(v string) string {
	if v == "" {
		return "(absent)"
	}
	return v
}

func percentText(p float64) string { return plan.FormatRate(p / 100) }

func devicesText(w engine.WavePreview) string {
	s := plural(w.Devices, "device")
	if !w.Exact {
		s = "about " + s
	}
	switch {
	case w.Stored:
		s += " (resolved and stored by apply)"
	case w.Percent < 100:
		s += fmt.Sprintf(" (%s sample of %d candidates)", percentText(w.Percent), w.Candidates)
	}
	return s
}

func batchesText(w engine.WavePreview) string {
	if len(w.Batches) == 0 {
		return "none"
	}
	var sizes []string
	jobs := 0
	for _, b := range w.Batches {
		sizes = append(sizes, fmt.Sprint(b.Devices))
		jobs += b.Jobs
	}
	return fmt.Sprintf("%d (%s devices; %s)", len(w.Batches), strings.Join(sizes, ", "), plural(jobs, "job"))
}

// estimated marks figures scaled from a wave's candidates to its sample.
func estimated(w engine.WavePreview) string {
	if w.DiffEstimated {
		return " (estimated from the candidates)"
	}
	return ""
}

func diffText(d engine.PathDiff) string {
	var from []string
	for _, v := range d.From {
		from = append(from, fmt.Sprintf("%d from %s", v.Devices, valueText(v.Value)))
	}
	if len(from) == 0 {
		from = append(from, "none change")
	}
	return fmt.Sprintf("%s → %s: %s; %d already have it", d.Path, d.To, strings.Join(from, ", "), d.NoOps)
}

func estimateText(e engine.Estimate) string {
	s := e.Total.String()
	if e.Worst != e.Total {
		s += fmt.Sprintf(" (up to %s while verify waits)", e.Worst)
	}
	if e.Approvals > 0 {
		s += ", plus " + plural(e.Approvals, "approval")
	}
	return s
}

func estimateParts(e engine.Estimate) string {
	return fmt.Sprintf("resolve %s, snapshot %s, jobs %s, bake %s", e.Resolve, e.Snapshot, e.Jobs, e.Bake)
}

func queriesText(pv *engine.Preview) string {
	s := fmt.Sprintf("%d query requests (listing ids bounded by --max-queries %d)", pv.Queries, pv.QueryBudget)
	switch {
	case pv.QueryTime > 0 && len(pv.Hubs) > 0:
		s += fmt.Sprintf(", %s of the busiest hub's query quota", pv.QueryTime)
	case pv.QueryTime > 0:
		s += fmt.Sprintf(", %s of %s's query quota", pv.QueryTime, pv.Tier)
	}
	return s
}

func writePlanText(out io.Writer, p *plan.Plan, pv *engine.Preview) error {
	w := &errWriter{w: out}
	w.printf("Rollout %s (plan %.8s), %s\n", pv.Rollout, pv.PlanHash, kindText(pv.Kind))
	w.printf("Fleet: %s: %s\n", pv.Fleet, plural(pv.FleetDevices, "device"))
	if s := pv.State; s != nil {
		w.printf("State: %s; %s\n", s.Status, s.Summary)
	}
	for i, wv := range pv.Waves {
		w.printf("\nWave %d/%d %s: %s\n", i+1, len(pv.Waves), wv.Name, devicesText(wv))
		if wv.Status != "" {
			w.printf("  status:    %s\n", wv.Status)
		}
		w.printf("  condition: %s\n", wv.Condition)
		if wv.Overlap > 0 || wv.Skipped > 0 {
			w.printf("  overlap:   its target selects %d fleet devices: %d taken by earlier waves", wv.Selected, wv.Overlap)
			if wv.Skipped > 0 {
				w.printf(", %d skipped (see findings)", wv.Skipped)
			}
			w.printf("\n")
		}
		if len(wv.Sample) > 0 {
			w.printf("  sample:    %s\n", strings.Join(wv.Sample, ", "))
		}
		w.printf("  batches:   %s\n", batchesText(wv))
		for j, d := range wv.Diff {
			label := "             "
			if j == 0 {
				label = "  changes:   "
			}
			w.printf("%s%s%s\n", label, diffText(d), estimated(wv))
		}
		if wv.VerifyHolds != nil {
			w.printf("  verify:    %q already holds for %d of %d devices%s\n", p.Waves[i].Verify.Condition, *wv.VerifyHolds, wv.Devices, estimated(wv))
		}
		if wv.Offline != nil {
			w.printf("  offline:   %d of %d devices%s\n", *wv.Offline, wv.Devices, estimated(wv))
		}
		if wv.Approval {
			w.printf("  approval:  required (rollout approve %s --wave %s)\n", pv.Rollout, wv.Name)
		}
		w.printf("  estimate:  %s: %s\n", estimateText(wv.Estimate), estimateParts(wv.Estimate))
	}
	w.printf("\nFindings: ")
	if len(pv.Findings) == 0 {
		w.printf("none\n")
	} else {
		w.printf("%d\n", len(pv.Findings))
		for _, f := range pv.Findings {
			where := findingWhere(f, func(n string) string { return "wave " + n })
			w.printf("  %s: %s%s [%s]\n", f.Severity, where, f.Message, f.Code)
		}
	}
	writeHubsText(w, pv)
	w.printf("\nEstimate on %s: %s\n", pv.Tier, estimateText(pv.Estimate))
	if pv.Schedule {
		w.printf("  plus waits for the plan's schedule windows\n")
	}
	w.printf("Queries: %s\n", queriesText(pv))
	return w.err
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func writePlanMarkdown(out io.Writer, p *plan.Plan, pv *engine.Preview) error {
	w := &errWriter{w: out}
	w.printf("### rollout plan: `%s`\n\n", pv.Rollout)
	kind := kindText(pv.Kind)
	w.printf("%s%s, plan `%.8s`; fleet `%s`: %s.", strings.ToUpper(kind[:1]), kind[1:], pv.PlanHash, mdCell(pv.Fleet), plural(pv.FleetDevices, "device"))
	w.printf(" Estimate on %s: **%s**.\n\n", pv.Tier, estimateText(pv.Estimate))
	if s := pv.State; s != nil {
		w.printf("**State:** %s; %s\n\n", s.Status, s.Summary)
	}
	w.printf("| # | Wave | Devices | Batches | Estimate | Condition |\n|---|---|---|---|---|---|\n")
	for i, wv := range pv.Waves {
		name := wv.Name
		if wv.Approval {
			name += " (approval)"
		}
		w.printf("| %d | %s | %s | %s | %s | `%s` |\n", i+1, mdCell(name), mdCell(devicesText(wv)), mdCell(batchesText(wv)),
			mdCell(estimateText(wv.Estimate)), mdCell(wv.Condition))
	}
	writeHubsMarkdown(w, pv)
	if len(pv.Findings) > 0 {
		w.printf("\n#### Findings\n\n")
		for _, f := range pv.Findings {
			where := findingWhere(f, func(n string) string { return "wave **" + n + "**" })
			w.printf("- :warning: %s%s (`%s`)\n", where, f.Message, f.Code)
		}
	}
	hasDiff := false
	for _, wv := range pv.Waves {
		hasDiff = hasDiff || len(wv.Diff) > 0
	}
	if hasDiff {
		w.printf("\n<details><summary>Twin changes per wave</summary>\n\n")
		for _, wv := range pv.Waves {
			if len(wv.Diff) == 0 {
				continue
			}
			w.printf("**%s**\n\n", wv.Name)
			for _, d := range wv.Diff {
				w.printf("- `%s` → `%s`: ", d.Path, d.To)
				var from []string
				for _, v := range d.From {
					from = append(from, fmt.Sprintf("%d from `%s`", v.Devices, valueText(v.Value)))
				}
				if len(from) == 0 {
					from = append(from, "none change")
				}
				w.printf("%s; %d already have it\n", strings.Join(from, ", "), d.NoOps)
			}
			w.printf("\n")
		}
		w.printf("</details>\n")
	}
	w.printf("\n<sub>%s</sub>\n", queriesText(pv))
	return w.err
}

// writePlanGithub writes each finding as a workflow-command annotation on the plan file, and a
// one-line summary.
func writePlanGithub(out io.Writer, p *plan.Plan, pv *engine.Preview) error {
	w := &errWriter{w: out}
	esc := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	prop := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
	for _, f := range pv.Findings {
		title := "rollout plan"
		if where := findingWhere(f, func(n string) string { return "wave " + n }); where != "" {
			title += ": " + strings.TrimSuffix(where, ": ")
		}
		w.printf("::warning file=%s,title=%s::%s\n", prop.Replace(p.File), prop.Replace(title), esc.Replace(f.Message))
	}
	total := 0
	for _, wv := range pv.Waves {
		total += wv.Devices
	}
	w.printf("rollout plan %s: %s in %s, %s, estimate %s\n", pv.Rollout, plural(total, "device"),
		plural(len(pv.Waves), "wave"), plural(len(pv.Findings), "finding"), estimateText(pv.Estimate))
	return w.err
}
