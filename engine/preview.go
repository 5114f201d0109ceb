package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// This file previews a plan against the hub (`rollout plan`): which devices each wave would take, what
// a twin update would change on them, what looks wrong, and how long the rollout would take. It asks
// the hub only read-only queries, and as few as it can.
//
// Wave resolution is the engine's own: the runner's resolveSets gives the query apply pages through
// (the plan's composed condition, plan.Condition) and the devices earlier waves took, and its
// queryWave keeps what is not taken and falls in the wave's stable sample (InSample). A wave without
// percent whose candidates no earlier percent wave can have sampled takes exactly what its condition
// selects, so the preview counts it with COUNT, groups its twin values with GROUP BY and never lists
// it. A full wave that earlier samples overlap subtracts them: their ids are known, so it counts and
// groups over its condition AND deviceId IN [...] chunks of them, a few dozen queries where listing
// would take thousands. A percent wave is resolved by the engine's code itself, paging through ids
// within the query budget, and reads its twin values over its own ids the same way; over the budget
// its count is estimated from its candidates and marked so.
//
// The composed condition says AND NOT (earlier full waves' targets), guarded by plan.Condition so that
// a device lacking a property an earlier target tests is still selected. What the guard cannot save —
// a property holding a value of another type than the target compares it with, which leaves the NOT
// undefined — the preview counts with positive conditions only (fleet AND target, less fleet AND
// target AND (earlier targets)) and reports as devices no wave takes.

// PreviewOptions configure PreviewPlan.
type PreviewOptions struct {
	Hub Hub
	// Quotas are the connected hub's limits: page size and query length (zero: the hub's defaults).
	Quotas hubapi.Quotas
	// Estimate are the quotas the duration estimate assumes (zero: Quotas). A preview against the
	// unlimited emulator usually estimates for the tier the real hub has.
	Estimate hubapi.Quotas
	// Store is the rollout's state, when it may have some (nil: none).
	Store *Store
	// Now decides the next step of an existing rollout (zero: the wall clock).
	Now time.Time
	// SampleSize is how many device ids each wave shows (0: 5).
	SampleSize int
	// MaxFirstWave is a policy limit on the first wave's devices (0: none).
	MaxFirstWave int
	// MaxQueries bounds the queries the preview spends paging through device ids; counting and
	// grouping queries, a few per wave and patched path, are always spent (0: 100, five minutes of an S1
	// hub's query quota).
	MaxQueries int
}

// Preview is what `rollout apply` would do with a plan now. Its JSON form is the output of
// `rollout plan --format json`.
type Preview struct {
	Rollout  string `json:"rollout"`
	PlanHash string `json:"planHash"`
	Kind     string `json:"kind"` // "twinUpdate" or "directMethod" (of the first wave)
	Fleet    string `json:"fleet"`
	// FleetDevices is how many devices the fleet condition selects now.
	FleetDevices int `json:"fleetDevices"`
	// Untargeted is how many fleet devices no wave takes (an estimate when a wave's count is).
	Untargeted int           `json:"untargeted"`
	Waves      []WavePreview `json:"waves"`
	Findings   []Finding     `json:"findings"`
	Estimate   Estimate      `json:"estimate"`
	// Tier names the quotas the estimate assumes.
	Tier string `json:"tier"`
	// Queries is how many query requests (pages) the preview spent; QueryBudget bounds the id listing.
	Queries     int `json:"queries"`
	QueryBudget int `json:"queryBudget"`
	// QueryTime is how long those queries take of the estimate tier's query quota.
	QueryTime time.Duration `json:"-"`
	State     *StatePreview `json:"state,omitempty"`
	// Schedule is set when waves start only inside schedule windows (waits the estimate leaves out).
	Schedule bool `json:"schedule,omitempty"`
}

// WavePreview is one wave of a Preview.
type WavePreview struct {
	Name string `json:"name"`
	// Condition is the wave's composed condition (plan.Condition): fleet AND target AND NOT (earlier
	// full waves' targets).
	Condition string  `json:"condition"`
	Percent   float64 `json:"percent"`
	Action    string  `json:"action"` // "twinUpdate" or "directMethod"
	// Candidates are the devices Condition selects: what apply pages through, before earlier percent
	// waves' samples and its own sample are taken out.
	Candidates int `json:"candidates"`
	// Selected is how many devices fleet AND target select; Overlap how many of them earlier waves
	// take (for a percent wave, without what earlier samples took).
	Selected int `json:"selected"`
	Overlap  int `json:"overlap"`
	// Skipped is how many devices fleet AND target select, and no earlier full wave takes, that
	// Condition does not select: they lack a property an earlier target tests, and NOT over a missing
	// property is not true on the hub.
	Skipped int `json:"skipped"`
	// Devices is how many devices the wave takes. Exact is false when it was estimated (over the query
	// budget); Stored is true when an earlier apply already resolved and stored them.
	Devices int            `json:"devices"`
	Exact   bool           `json:"exact"`
	Stored  bool           `json:"stored,omitempty"`
	Sample  []string       `json:"sample"`
	Batches []BatchPreview `json:"batches"`
	Diff    []PathDiff     `json:"diff,omitempty"`
	// DiffEstimated is set when Diff, VerifyHolds and Offline were scaled from the candidates to the
	// sample's size (a wave not resolved by id, over the query budget).
	DiffEstimated bool `json:"diffEstimated,omitempty"`
	Approval      bool `json:"approval,omitempty"`
	// VerifyHolds is how many of the wave's devices satisfy the verify condition already (nil: no
	// verify, or not read).
	VerifyHolds *int `json:"verifyHolds,omitempty"`
	// Offline is how many of a direct-method wave's devices are disconnected now.
	Offline  *int     `json:"offline,omitempty"`
	Estimate Estimate `json:"estimate"`
	Status   Status   `json:"status,omitempty"` // from the state, when there is one
}

// BatchPreview is one batch a wave would run: a range of its devices and the jobs that carry it (more
// than one when a batch's deviceId IN [...] condition exceeds the hub's query length).
type BatchPreview struct {
	Devices int `json:"devices"`
	Jobs    int `json:"jobs"`
}

// PathDiff is the change a twin update makes at one patched path over a wave's devices.
type PathDiff struct {
	Path string `json:"path"` // "tags.fwChannel", "properties.desired.firmware.version"
	// To is the new value as JSON ("null" removes the property).
	To string `json:"to"`
	// From lists the current values that change, most devices first.
	From []ValueCount `json:"from"`
	// NoOps is how many devices already have the new value.
	NoOps int `json:"noOps"`
}

// ValueCount is how many devices have one current value; Value is JSON, or "" when the property is
// absent.
type ValueCount struct {
	Value   string `json:"value"`
	Devices int    `json:"devices"`
}

// Finding is something a release engineer should look at before applying.
type Finding struct {
	Severity plan.Severity `json:"severity"`
	Code     string        `json:"code"`
	Wave     string        `json:"wave,omitempty"`
	Message  string        `json:"message"`
}

// The finding codes.
const (
	FindingEmptyWave   = "empty-wave"
	FindingUntargeted  = "untargeted-devices"
	FindingPercentZero = "percent-rounds-to-zero"
	FindingFirstWave   = "first-wave-too-large"
	FindingVerifyHolds = "verify-already-holds"
	FindingOffline     = "offline-devices"
	FindingEstimated   = "estimated-count"
	FindingPlanChanged = "plan-changed"
	FindingUndefined   = "condition-misses-devices"
)

// Estimate is how long a wave, or the whole rollout, would take under the estimate quotas. Total is
// the expected time when gates pass at once; Worst lets verify take its whole window. Approvals
// (waits for a person) and schedule windows are not included; Approvals counts the former.
type Estimate struct {
	Resolve   time.Duration // paging through the wave's candidate ids
	Snapshot  time.Duration // capturing prior twin values
	Jobs      time.Duration // job device operations, plus job polling
	Bake      time.Duration
	Verify    time.Duration // the verify window (Worst)
	Total     time.Duration
	Worst     time.Duration
	Approvals int
}

// MarshalJSON writes durations as Go duration strings ("1h2m3s").
func (e Estimate) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Resolve   string `json:"resolve"`
		Snapshot  string `json:"snapshot"`
		Jobs      string `json:"jobs"`
		Bake      string `json:"bake"`
		Verify    string `json:"verify"`
		Total     string `json:"total"`
		Worst     string `json:"worst"`
		Approvals int    `json:"approvals"`
	}{e.Resolve.String(), e.Snapshot.String(), e.Jobs.String(), e.Bake.String(), e.Verify.String(),
		e.Total.String(), e.Worst.String(), e.Approvals})
}

func (e Estimate) add(d Estimate) Estimate {
	return Estimate{Resolve: e.Resolve + d.Resolve, Snapshot: e.Snapshot + d.Snapshot, Jobs: e.Jobs + d.Jobs,
		Bake: e.Bake + d.Bake, Verify: e.Verify + d.Verify, Total: e.Total + d.Total, Worst: e.Worst + d.Worst,
		Approvals: e.Approvals + d.Approvals}
}

// StatePreview is where an existing rollout stands and what apply would do next.
type StatePreview struct {
	Status      Status    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	PlanChanged bool      `json:"planChanged,omitempty"`
	Next        StepKind  `json:"next,omitempty"`
	NextWave    string    `json:"nextWave,omitempty"`
	NextBatch   int       `json:"nextBatch,omitempty"`
	Until       time.Time `json:"until,omitzero"`
	// Summary says the same in a sentence.
	Summary string `json:"summary"`
}

// ErrQueryBudget is wrapped by the error of a listing that would exceed PreviewOptions.MaxQueries.
var ErrQueryBudget = errors.New("over the preview's query budget")

type previewer struct {
	PreviewOptions
	p       *plan.Plan
	out     *Preview
	conds   []query.Expr // per wave: fleet AND target
	targets []query.Expr // per wave: target alone (All for "*")
	// r is a runner without a store: the engine's own resolution, with the devices of every wave the
	// preview resolved by id (or read from the state) in its cache.
	r *runner
	// listed marks the percent waves whose samples are known.
	listed map[int]bool
	// overlap[i][k] counts the candidates of wave i that earlier percent wave k's condition selects.
	overlap map[int]map[int]int
	// excl[i] are deviceId IN [...] conditions over the samples earlier percent waves took, which wave
	// i's counts subtract.
	excl map[int][]query.Expr
	// incl[i] are deviceId IN [...] conditions over the ids of wave i, when it was listed.
	incl map[int][]query.Expr
}

// PreviewPlan works out what applying p would do now, asking the hub only read-only queries. It returns
// an error only when the hub or the state cannot be read; everything questionable about the plan is a
// Finding.
func PreviewPlan(ctx context.Context, p *plan.Plan, o PreviewOptions) (*Preview, error) {
	if o.SampleSize <= 0 {
		o.SampleSize = 5
	}
	if o.MaxQueries <= 0 {
		o.MaxQueries = 100
	}
	if o.Quotas.Tier == "" {
		o.Quotas, _ = hubapi.TierQuotas("unlimited", 1)
	}
	if o.Estimate.Tier == "" {
		o.Estimate = o.Quotas
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	pv := &previewer{PreviewOptions: o, p: p, listed: map[int]bool{}, overlap: map[int]map[int]int{},
		excl: map[int][]query.Expr{}, incl: map[int][]query.Expr{},
		r: newRunner(Options{Hub: o.Hub, Quotas: o.Quotas}, p)}
	pv.out = &Preview{Rollout: p.Name, PlanHash: p.Hash, Fleet: formatOrAll(p.Fleet), QueryBudget: o.MaxQueries,
		Tier: o.Estimate.Tier, Schedule: p.Schedule != nil, Kind: "twinUpdate", Findings: []Finding{}}
	if p.Waves[0].Action.DirectMethod != nil {
		pv.out.Kind = "directMethod"
	}
	fleet, err := parseOrAll(p.Fleet)
	if err != nil {
		return nil, err
	}
	for _, w := range p.Waves {
		t, err := parseOrAll(w.Target)
		if err != nil {
			return nil, err
		}
		pv.targets = append(pv.targets, t)
		pv.conds = append(pv.conds, query.And(fleet, t))
	}
	var st *State
	if o.Store != nil && o.Store.Exists() {
		if st, err = pv.state(); err != nil {
			return nil, err
		}
	}
	if pv.out.FleetDevices, err = pv.count(ctx, fleet); err != nil {
		return nil, err
	}
	covered := 0
	for i := range p.Waves {
		var sw *Wave
		if st != nil && !pv.out.State.PlanChanged {
			sw = &st.Waves[i]
		}
		w, err := pv.wave(ctx, i, sw)
		if err != nil {
			return nil, fmt.Errorf("preview wave %s: %w", p.Waves[i].Name, err)
		}
		pv.out.Waves = append(pv.out.Waves, *w)
		pv.out.Estimate = pv.out.Estimate.add(w.Estimate)
		covered += w.Devices
	}
	pv.out.Untargeted = max(0, pv.out.FleetDevices-covered)
	pv.findings()
	if qpm := o.Estimate.QueriesPerMinute; qpm > 0 && !math.IsInf(qpm, 1) {
		pv.out.QueryTime = seconds(float64(pv.out.Queries) * 60 / qpm)
	}
	return pv.out, nil
}

func parseOrAll(s string) (query.Expr, error) {
	if s = strings.TrimSpace(s); s == "" || s == "*" {
		return query.All{}, nil
	}
	e, err := query.ParseCondition(s)
	if err != nil {
		return nil, fmt.Errorf("condition %q: %w", s, err)
	}
	return e, nil
}

func formatOrAll(s string) string {
	e, err := parseOrAll(s)
	if err != nil {
		return s
	}
	return query.Format(e)
}

// state reads the rollout's state and decides what apply would do next.
func (pv *previewer) state() (*State, error) {
	st, err := pv.Store.Load()
	if err != nil {
		return nil, err
	}
	sp := &StatePreview{Status: st.Status, Reason: st.Reason}
	pv.out.State = sp
	if st.PlanHash != pv.p.Hash || len(st.Waves) != len(pv.p.Waves) {
		changes := plan.Changes(st.PlanParts, plan.Parts(pv.p))
		if st.Status == StatusRunning && !st.anyJob() {
			sp.Summary = fmt.Sprintf("the plan was edited before the rollout created a job (%s): apply starts the rollout over with it",
				strings.Join(changes, ", "))
			return st, nil
		}
		sp.PlanChanged = true
		sp.Summary = (&PlanChangedError{Name: st.Name, Was: st.PlanHash, Now: pv.p.Hash, Changes: changes, Known: st.PlanParts != nil}).Error()
		return st, nil
	}
	approved := func(wave string) bool {
		ok := false
		_ = pv.Store.View(func(tx *Tx) error {
			_, ok, _ = tx.Approval(wave)
			return nil
		})
		return ok
	}
	step := Next(pv.p, st, approved, pv.Now)
	sp.Next, sp.Until = step.Kind, step.Until
	name := ""
	if step.Wave >= 0 && step.Wave < len(st.Waves) {
		name = st.Waves[step.Wave].Name
	}
	switch step.Kind {
	case StepDone, StepHalted, StepRolledBack, StepRollback:
	default:
		sp.NextWave = name
		if step.Kind == StepBatch {
			sp.NextBatch = step.Batch + 1
		}
	}
	sp.Summary = describeStep(st, step, name)
	return st, nil
}

func describeStep(st *State, s Step, wave string) string {
	switch s.Kind {
	case StepDone:
		return "the rollout is done; apply has nothing to do"
	case StepHalted:
		return "the rollout halted (" + st.Reason + "); apply does nothing more, rollback undoes it"
	case StepRolledBack:
		return "the rollout was rolled back; apply does nothing more"
	case StepRollback:
		return "apply would continue the rollback (" + st.Reason + ")"
	case StepWaitApproval:
		return fmt.Sprintf("apply would wait for approval of wave %s (rollout approve %s --wave %s)", wave, st.Name, wave)
	case StepWaitSchedule:
		return fmt.Sprintf("apply would wait for a schedule window, until %s, to start wave %s", s.Until.UTC().Format(time.RFC3339), wave)
	case StepResolve:
		return fmt.Sprintf("apply would start wave %s: resolve and store its devices", wave)
	case StepBatch:
		return fmt.Sprintf("apply would run batch %d of wave %s", s.Batch+1, wave)
	case StepWaveGate:
		return fmt.Sprintf("apply would judge wave %s's success gate and start its bake", wave)
	case StepVerify:
		return fmt.Sprintf("apply would poll wave %s's verify condition", wave)
	case StepWaitBake:
		return fmt.Sprintf("apply would wait for wave %s's bake, until %s", wave, s.Until.UTC().Format(time.RFC3339))
	case StepFinishWave:
		return fmt.Sprintf("apply would finish wave %s and go on to the next", wave)
	}
	return string(s.Kind)
}

// rows runs q and returns every row, counting each page as one query.
func (pv *previewer) rows(ctx context.Context, q string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	pager := pv.Hub.Query(ctx, q, pageSize(pv.Quotas))
	for pager.More() {
		page, err := pager.NextPage(ctx)
		pv.out.Queries++
		if err != nil {
			if len(q) > 160 {
				q = q[:160] + "..."
			}
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		out = append(out, page...)
	}
	return out, nil
}

func where(c query.Expr) string {
	if _, all := c.(query.All); all || c == nil {
		return ""
	}
	return " WHERE " + query.Format(c)
}

// count runs one COUNT query.
func (pv *previewer) count(ctx context.Context, c query.Expr) (int, error) {
	rows, err := pv.rows(ctx, "SELECT COUNT() AS n FROM devices"+where(c))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, raw := range rows {
		k, err := countRow(raw)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// falseExpr selects nothing.
var falseExpr = query.Or()

// takenBefore is the condition that selects, among the devices of wave i's fleet AND target, those an
// earlier wave without percent takes: OR of their targets (nil when there is none). It is positive, so
// a device lacking a property it tests is not counted as taken, as apply does not take it either.
func (pv *previewer) takenBefore(i int) query.Expr {
	var parts []query.Expr
	for k := 0; k < i; k++ {
		if pv.p.Waves[k].Percent >= 100 {
			parts = append(parts, pv.targets[k])
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return query.Or(parts...)
}

func (pv *previewer) wave(ctx context.Context, i int, sw *Wave) (*WavePreview, error) {
	pw := pv.p.Waves[i]
	w := &WavePreview{Name: pw.Name, Condition: query.Format(pv.p.Condition(i)), Percent: pw.Percent,
		Approval: pw.Approval, Exact: true, Sample: []string{}, Batches: []BatchPreview{}, Action: "twinUpdate"}
	if pw.Action.DirectMethod != nil {
		w.Action = "directMethod"
	}
	cond := pv.p.Condition(i)
	candidates, err := pv.count(ctx, cond)
	if err != nil {
		return nil, err
	}
	w.Candidates = candidates
	// base is what counts over the condition are scaled from: the candidates, or for a wave whose
	// earlier samples were subtracted by id, its devices.
	base := candidates
	w.Selected = candidates
	if t := pv.takenBefore(i); t != nil {
		if w.Selected, err = pv.count(ctx, pv.conds[i]); err != nil {
			return nil, err
		}
		taken := 0
		if w.Selected > 0 {
			if taken, err = pv.count(ctx, query.And(pv.conds[i], t)); err != nil {
				return nil, err
			}
		}
		w.Overlap = taken
		w.Skipped = max(0, w.Selected-taken-candidates)
	}
	if sw != nil {
		w.Status = sw.Status
	}
	var ids []string
	paths := patchPaths(pw.Action.TwinUpdate)
	switch {
	case sw != nil && sw.Resolved:
		if err := pv.Store.View(func(tx *Tx) error {
			var err error
			ids, err = tx.Devices(i)
			return err
		}); err != nil {
			return nil, err
		}
		w.Stored = true
		w.Devices = len(ids)
		pv.r.devices[i] = ids
		pv.listed[i] = true
	case pw.Percent >= 100 && !pv.overlapsSample(ctx, i):
		w.Devices = candidates
		pv.r.devices[i] = nil // what it takes, no later condition selects
	case pw.Percent >= 100 && pv.excludeByID(i, len(paths)):
		if w.Devices, err = pv.countLess(ctx, i, cond); err != nil {
			return nil, err
		}
		w.Overlap += candidates - w.Devices
		base = w.Devices
		pv.r.devices[i] = nil
	default:
		ids, err = pv.list(ctx, i, candidates)
		switch {
		case errors.Is(err, ErrQueryBudget):
			w.Exact = false
			w.Devices = pv.estimateSample(i, candidates)
			pv.r.devices[i] = nil
		case err != nil:
			return nil, err
		default:
			w.Devices = len(ids)
			for k := 0; k < i; k++ {
				if pv.p.Waves[k].Percent < 100 && !pv.listed[k] {
					w.Exact = false // an earlier sample was estimated, so what it took is unknown
				}
			}
			if pv.includeByID(i, len(paths), ids) {
				base = w.Devices
			}
		}
	}
	if ids != nil {
		w.Sample = append(w.Sample, ids[:min(len(ids), pv.SampleSize)]...)
	} else if w.Devices > 0 {
		if w.Sample, err = pv.sample(ctx, i); err != nil {
			return nil, err
		}
	}
	w.Batches = pv.batches(ids, w.Devices, w.Sample, pw.Batch)
	if len(paths) > 0 && !w.Stored {
		if w.Diff, err = pv.diffGroups(ctx, i, paths, w.Devices, base); err != nil {
			return nil, err
		}
	}
	w.DiffEstimated = w.Devices != base
	if w.Devices > 0 && pw.Verify != nil {
		v, err := parseOrAll(pw.Verify.Condition)
		if err != nil {
			return nil, err
		}
		if w.VerifyHolds, err = pv.countScaled(ctx, i, query.And(cond, v), w.Devices, base); err != nil {
			return nil, err
		}
	}
	if w.Devices > 0 && pw.Action.DirectMethod != nil {
		off, err := query.ParseCondition("connectionState = 'Disconnected'")
		if err != nil {
			return nil, err
		}
		if w.Offline, err = pv.countScaled(ctx, i, query.And(cond, off), w.Devices, base); err != nil {
			return nil, err
		}
	}
	w.Estimate = pv.estimate(i, w, sw)
	return w, nil
}

// scale turns a count over a wave's candidates into one over its devices (the percent sample is a
// uniform hash, so shares carry over).
func scale(n, devices, candidates int) int {
	if candidates <= 0 || devices == candidates {
		return min(n, devices)
	}
	return int(math.Round(float64(n) * float64(devices) / float64(candidates)))
}

// overlapsSample reports whether an earlier percent wave may have taken some of wave i's candidates;
// when none can, wave i's count needs no ids.
func (pv *previewer) overlapsSample(ctx context.Context, i int) bool {
	pv.overlap[i] = map[int]int{}
	overlaps := false
	for k := 0; k < i; k++ {
		if pv.p.Waves[k].Percent >= 100 {
			continue
		}
		n, err := pv.count(ctx, query.And(pv.p.Condition(i), pv.conds[k]))
		if err != nil {
			return true // the listing that follows reports the error
		}
		pv.overlap[i][k] = n
		overlaps = overlaps || n > 0
	}
	return overlaps
}

// excludeByID prepares wave i's counts to subtract, by deviceId IN [...] conditions, the samples that
// earlier percent waves took of its candidates. That is far cheaper than listing wave i when the
// samples are small next to it. It reports false, leaving wave i to be listed, when a sample is not
// known by id, the conditions leave no room for ids, or the queries would exceed the budget.
func (pv *previewer) excludeByID(i, paths int) bool {
	room := pv.room(i)
	for _, k := range slices.Sorted(maps.Keys(pv.overlap[i])) {
		if pv.overlap[i][k] > 0 && !pv.listed[k] {
			return false
		}
	}
	if room < 500 {
		return false
	}
	var excl []query.Expr
	for _, k := range slices.Sorted(maps.Keys(pv.overlap[i])) {
		if pv.overlap[i][k] == 0 {
			continue
		}
		excl = append(excl, inChunks(pv.r.devices[k], room)...)
	}
	if pv.out.Queries+len(excl)*(3+paths) > pv.MaxQueries {
		return false
	}
	pv.excl[i] = excl
	return true
}

// room is how many characters of a query's condition a deviceId IN [...] part of wave i may take.
func (pv *previewer) room(i int) int {
	room := maxQuery(pv.Quotas) - len(query.Format(pv.p.Condition(i))) - 200
	if v := pv.p.Waves[i].Verify; v != nil {
		room -= len(v.Condition) + 10
	}
	return room
}

// inChunks splits ids into deviceId IN [...] conditions of at most room characters each.
func inChunks(ids []string, room int) []query.Expr {
	var out []query.Expr
	for start := 0; start < len(ids); {
		// query.Format writes "deviceId IN ['a', 'b']": each id costs its quoted length and ", ".
		end, n := start, len("deviceId IN []")
		for end < len(ids) && (end == start || n+len(query.Quote(ids[end]))+2 <= room) {
			n += len(query.Quote(ids[end])) + 2
			end++
		}
		out = append(out, query.In("deviceId", ids[start:end]))
		start = end
	}
	return out
}

// includeByID prepares the counts and twin values of a wave listed by id to be read over its ids,
// in deviceId IN [...] chunks: exact, and cheaper than listing again (a chunk holds several pages'
// worth of ids). It reports false when the queries would exceed the budget.
func (pv *previewer) includeByID(i, paths int, ids []string) bool {
	room := pv.room(i)
	if room < 500 {
		return false
	}
	incl := inChunks(ids, room)
	if pv.out.Queries+len(incl)*(2+paths) > pv.MaxQueries {
		return false
	}
	pv.incl[i] = incl
	return true
}

// countScaled is countLess scaled from the wave's candidates (base) to its devices.
func (pv *previewer) countScaled(ctx context.Context, i int, c query.Expr, devices, base int) (*int, error) {
	n, err := pv.countLess(ctx, i, c)
	if err != nil {
		return nil, err
	}
	n = scale(n, devices, base)
	return &n, nil
}

// countLess counts what c selects of wave i: over its ids when it was listed, or less what its
// exclusions (earlier samples) take.
func (pv *previewer) countLess(ctx context.Context, i int, c query.Expr) (int, error) {
	if incl, ok := pv.incl[i]; ok {
		n := 0
		for _, in := range incl {
			m, err := pv.count(ctx, query.And(c, in))
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	}
	n, err := pv.count(ctx, c)
	if err != nil {
		return 0, err
	}
	for _, ex := range pv.excl[i] {
		m, err := pv.count(ctx, query.And(c, ex))
		if err != nil {
			return 0, err
		}
		n -= m
	}
	return n, nil
}

// estimateSample estimates a wave's count when its ids were not listed: its candidates, less the share
// of them each earlier percent wave took of its own candidates, times its own percent.
func (pv *previewer) estimateSample(i, candidates int) int {
	f := float64(candidates)
	for k, n := range pv.overlap[i] {
		if w := pv.out.Waves[k]; w.Candidates > 0 {
			f -= float64(n) * float64(w.Devices) / float64(w.Candidates)
		}
	}
	return int(math.Round(max(0, f) * math.Min(pv.p.Waves[i].Percent, 100) / 100))
}

// list resolves wave i as apply does, with the engine's own resolveSets and queryWave: it pages
// through the ids its composed condition selects and keeps those no earlier wave took that fall in its
// sample. It refuses with ErrQueryBudget, before sending anything, when the pages would exceed the
// budget.
func (pv *previewer) list(ctx context.Context, i, candidates int) ([]string, error) {
	pw := pv.p.Waves[i]
	pages := max(1, (candidates+pageSize(pv.Quotas)-1)/pageSize(pv.Quotas))
	if pv.out.Queries+pages > pv.MaxQueries {
		return nil, fmt.Errorf("wave %s needs %d pages of ids: %w", pw.Name, pages, ErrQueryBudget)
	}
	q, taken, err := pv.r.resolveSets(i)
	if err != nil {
		return nil, err
	}
	ids, err := pv.r.queryWave(ctx, pw.Name, q, taken.has, pw.Percent)
	pv.out.Queries += pages
	if err != nil {
		return nil, err
	}
	pv.r.devices[i] = ids
	pv.listed[i] = true
	return ids, nil
}

func rowID(raw json.RawMessage) (string, error) {
	var row struct {
		DeviceID string `json:"deviceId"`
	}
	if err := json.Unmarshal(raw, &row); err != nil || row.DeviceID == "" {
		return "", fmt.Errorf("unexpected query row %s", raw)
	}
	return row.DeviceID, nil
}

// sample reads a few ids of a wave counted without listing: devices its composed condition selects
// that no earlier listed sample took, in the wave's own sample (the hub's order is its own, so the ids
// are sorted).
func (pv *previewer) sample(ctx context.Context, i int) ([]string, error) {
	ids := []string{}
	pw := pv.p.Waves[i]
	overlapped := false
	for _, n := range pv.overlap[i] {
		overlapped = overlapped || n > 0
	}
	if !overlapped && pw.Percent >= 100 {
		raws, err := pv.rows(ctx, fmt.Sprintf("SELECT TOP %d deviceId FROM devices%s", pv.SampleSize, where(pv.p.Condition(i))))
		if err != nil {
			return nil, err
		}
		for _, raw := range raws {
			id, err := rowID(raw)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return ids, nil
	}
	// Earlier samples took some of what the condition selects, or the wave takes a sample of it: skip
	// the ids it does not take, as apply would, reading at most a few pages (the sample may then be
	// short).
	_, taken, err := pv.r.resolveSets(i)
	if err != nil {
		return nil, err
	}
	pager := pv.Hub.Query(ctx, "SELECT deviceId FROM devices"+where(pv.p.Condition(i)), pageSize(pv.Quotas))
	for pages := 0; pages < 3 && len(ids) < pv.SampleSize && pager.More(); pages++ {
		page, err := pager.NextPage(ctx)
		pv.out.Queries++
		if err != nil {
			return nil, err
		}
		for _, raw := range page {
			id, err := rowID(raw)
			if err != nil {
				return nil, err
			}
			if !taken.has(id) && InSample(pv.p.Name, id, pw.Percent) && len(ids) < pv.SampleSize {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// batches splits a wave's devices as apply would: BatchRanges, then SplitIn per batch for the jobs.
// Without the ids, the jobs of a batch are estimated from the sample's id lengths.
func (pv *previewer) batches(ids []string, n int, sample []string, b plan.Batch) []BatchPreview {
	out := []BatchPreview{}
	maxCond := maxQuery(pv.Quotas)
	avg := 12.0
	if len(sample) > 0 {
		total := 0
		for _, id := range sample {
			total += len(query.Quote(id)) + 1
		}
		avg = float64(total) / float64(len(sample))
	}
	for _, rg := range BatchRanges(n, b) {
		bp := BatchPreview{Devices: rg[1] - rg[0]}
		if ids != nil {
			bp.Jobs = len(SplitIn(ids[rg[0]:rg[1]], maxCond))
		} else {
			bp.Jobs = max(1, int(math.Ceil((float64(bp.Devices)*avg+14)/float64(maxCond))))
		}
		out = append(out, bp)
	}
	return out
}

var plainSegment = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_]*$`)

// patchPaths lists the leaf paths of a twin update, as query text, sorted. A twin patch merges
// objects, so only its leaves change values.
func patchPaths(tu *plan.TwinUpdate) []string {
	if tu == nil {
		return nil
	}
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			seg := k
			if !plainSegment.MatchString(k) {
				seg = "[[" + k + "]]"
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(prefix+"."+seg, sub)
				continue
			}
			out = append(out, prefix+"."+seg)
		}
	}
	walk("tags", tu.Tags)
	walk("properties.desired", tu.Desired)
	sort.Strings(out)
	return out
}

// patchValue returns the new value at path as canonical JSON.
func patchValue(tu *plan.TwinUpdate, path string) string {
	var cur any
	segs := strings.Split(path, ".")
	switch {
	case segs[0] == "tags":
		cur, segs = tu.Tags, segs[1:]
	default:
		cur, segs = tu.Desired, segs[2:]
	}
	for _, s := range segs {
		m, _ := cur.(map[string]any)
		cur = m[strings.TrimSuffix(strings.TrimPrefix(s, "[["), "]]")]
	}
	return canonical(cur)
}

// canonical renders a value as JSON with numbers as written, so that the plan's 60 and the hub's 60
// compare equal.
func canonical(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return canonicalRaw(b)
}

func canonicalRaw(raw json.RawMessage) string {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func (pv *previewer) tu(i int) *plan.TwinUpdate { return pv.p.Waves[i].Action.TwinUpdate }

// diffGroups counts current values per patched path with GROUP BY queries over the wave's candidates
// (less earlier samples, or over its own ids, when those are known); for a wave whose sample is not
// known by id the counts are scaled to its devices. Devices lacking the path are read from the group
// row that has no "v": the hub documents GROUP BY but not how it groups an undefined value, so this
// follows Cosmos DB and the emulator (a choice, unconfirmed on a real hub).
func (pv *previewer) diffGroups(ctx context.Context, i int, paths []string, devices, candidates int) ([]PathDiff, error) {
	var out []PathDiff
	for _, path := range paths {
		counts := map[string]int{}
		group := func(c query.Expr, sign int) error {
			raws, err := pv.rows(ctx, fmt.Sprintf("SELECT %s AS v, COUNT() AS n FROM devices%s GROUP BY %s", path, where(c), path))
			if err != nil {
				return err
			}
			for _, raw := range raws {
				var row map[string]json.RawMessage
				if err := json.Unmarshal(raw, &row); err != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				var num json.Number
				if json.Unmarshal(row["n"], &num) != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				n, err := num.Int64()
				if err != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				val := ""
				if v, ok := row["v"]; ok {
					val = canonicalRaw(v)
				}
				counts[val] += sign * int(n)
			}
			return nil
		}
		if incl, ok := pv.incl[i]; ok {
			for _, in := range incl {
				if err := group(query.And(pv.p.Condition(i), in), 1); err != nil {
					return nil, err
				}
			}
		} else if candidates > 0 {
			if err := group(pv.p.Condition(i), 1); err != nil {
				return nil, err
			}
			for _, ex := range pv.excl[i] {
				if err := group(query.And(pv.p.Condition(i), ex), -1); err != nil {
					return nil, err
				}
			}
		}
		for v, n := range counts {
			counts[v] = scale(n, devices, candidates)
		}
		out = append(out, makeDiff(path, patchValue(pv.tu(i), path), counts))
	}
	return out, nil
}

func makeDiff(path, to string, counts map[string]int) PathDiff {
	d := PathDiff{Path: path, To: to, From: []ValueCount{}}
	for v, n := range counts {
		if n <= 0 {
			continue
		}
		if v == to {
			d.NoOps += n
			continue
		}
		d.From = append(d.From, ValueCount{Value: v, Devices: n})
	}
	sort.Slice(d.From, func(a, b int) bool {
		if d.From[a].Devices != d.From[b].Devices {
			return d.From[a].Devices > d.From[b].Devices
		}
		return d.From[a].Value < d.From[b].Value
	})
	return d
}

func seconds(s float64) time.Duration {
	if s <= 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}

// perSec is n operations at rate per second, as a duration (0 when the rate is unlimited).
func perSec(n int, rate float64) time.Duration {
	if rate <= 0 || math.IsInf(rate, 1) {
		return 0
	}
	return seconds(float64(n) / rate)
}

// estimate is how long wave i takes, or still takes when apply started it (sw), under the estimate
// quotas: apply pages through the wave's
// candidate ids, captures prior twin values per batch (by query or by reads, whichever the tier makes
// faster, as the engine chooses), runs the jobs at the tier's job device operations per second with
// its concurrent jobs, polls each round of jobs, then bakes while verify polls.
func (pv *previewer) estimate(i int, w *WavePreview, sw *Wave) Estimate {
	q := pv.Estimate
	pw := pv.p.Waves[i]
	if sw != nil && (sw.Status == StatusDone || sw.Status == StatusFailed) {
		return Estimate{}
	}
	page := q.MaxPageSize
	if page <= 0 {
		page = hubapi.MaxPageSize
	}
	qps := q.QueriesPerMinute / 60
	var e Estimate
	if pw.Approval && (sw == nil || sw.Status == StatusPending) {
		e.Approvals = 1
	}
	if !w.Stored {
		e.Resolve = perSec((w.Candidates+page-1)/page, qps)
	}
	// Only the batches apply has not finished are still to run.
	var todo []BatchPreview
	for b, bp := range w.Batches {
		if sw == nil || b >= len(sw.Batches) || sw.Batches[b].Status != StatusDone {
			todo = append(todo, bp)
		}
	}
	if sw != nil && sw.Status == StatusBaking {
		todo = nil
	}
	devices := 0
	for _, b := range todo {
		devices += b.Devices
	}
	if pw.Action.TwinUpdate != nil {
		byQuery := perSec((devices+page-1)/page+len(todo), qps)
		byReads := perSec(devices, q.TwinReadsPerSec)
		e.Snapshot = byQuery
		if byReads < byQuery || math.IsInf(qps, 1) {
			e.Snapshot = min(byQuery, byReads)
		}
	}
	conc := max(1, q.ConcurrentJobs)
	var poll time.Duration
	if jpm := q.JobOpsPerMinute; jpm > 0 && !math.IsInf(jpm, 1) {
		poll = seconds(1.5 * 60 / jpm * float64(conc))
	}
	for _, b := range todo {
		rounds := (b.Jobs + conc - 1) / conc
		e.Jobs += perSec(b.Devices, q.JobDeviceOpsPerSec) + time.Duration(rounds)*poll
	}
	if w.Devices == 0 {
		// An empty wave passes its gate at once and is done without bake or verify.
		e.Total, e.Worst = e.Resolve, e.Resolve
		return e
	}
	e.Bake = pw.Bake
	var verifyRead time.Duration
	if pw.Verify != nil {
		verifyRead = perSec(w.Devices/500+1, qps)
		e.Verify = max(pw.Verify.Within, verifyRead)
	}
	if sw != nil && sw.Status == StatusBaking {
		// The bake and the verify window run from the bake's start.
		elapsed := max(0, pv.Now.Sub(sw.BakeStart)).Round(time.Second)
		e.Bake = max(0, e.Bake-elapsed)
		if sw.VerifyOK {
			e.Verify, verifyRead = 0, 0
		} else if e.Verify > 0 {
			e.Verify = max(verifyRead, e.Verify-elapsed)
		}
	}
	work := e.Resolve + e.Snapshot + e.Jobs
	e.Total = work + max(e.Bake, verifyRead)
	e.Worst = work + max(e.Bake, e.Verify)
	return e
}

func (pv *previewer) findings() {
	add := func(code, wave, msg string, args ...any) {
		pv.out.Findings = append(pv.out.Findings, Finding{Severity: plan.Warning, Code: code, Wave: wave,
			Message: fmt.Sprintf(msg, args...)})
	}
	if s := pv.out.State; s != nil && s.PlanChanged {
		add(FindingPlanChanged, "", "%s", s.Summary)
	}
	for i, w := range pv.out.Waves {
		pw := pv.p.Waves[i]
		if !w.Exact {
			add(FindingEstimated, w.Name, "about %d devices: resolving this wave by id would exceed the query budget of %d queries; raise it (--max-queries) for an exact count",
				w.Devices, pv.MaxQueries)
		}

		if w.Skipped > 0 {
			add(FindingUndefined, w.Name, "%d devices that fleet AND target select, and no earlier wave takes, lack a property an earlier wave's target tests: NOT over a missing property is not true on IoT Hub, so the composed condition skips them and no wave takes them here",
				w.Skipped)
		}
		if w.Devices == 0 && w.Exact {
			// What apply will do with it: an empty wave halts the rollout unless it allows that.
			consequence := "apply halts the rollout here (exit 2) unless the wave says allowEmpty: true"
			if pw.AllowEmpty {
				consequence = "allowEmpty: true lets the rollout go on"
			}
			if pw.Percent < 100 && w.Candidates > 0 {
				add(FindingPercentZero, w.Name, "its %s sample of %d candidate devices selects none: %s", pctOf(pw.Percent), w.Candidates, consequence)
			} else {
				add(FindingEmptyWave, w.Name, "the wave selects no device: %s", consequence)
			}
			if !pw.AllowEmpty {
				pv.out.Findings[len(pv.out.Findings)-1].Severity = plan.Error
			}
		}
		if i == 0 && pv.MaxFirstWave > 0 && w.Devices > pv.MaxFirstWave {
			add(FindingFirstWave, w.Name, "the first wave takes %s, more than the limit of %d", plural(w.Devices, "device"), pv.MaxFirstWave)
		}
		if w.VerifyHolds != nil && w.Devices > 0 {
			rate := float64(*w.VerifyHolds) / float64(w.Devices)
			if rate+1e-9 >= pw.Verify.MinRate {
				add(FindingVerifyHolds, w.Name, "verify condition %q already holds for %d of %d devices (%s, minRate %s) before the change: the gate proves nothing",
					pw.Verify.Condition, *w.VerifyHolds, w.Devices, pct(rate), pct(pw.Verify.MinRate))
			}
		}
		if w.Offline != nil && *w.Offline > 0 {
			wait := "connectTimeout is 0, so they count as unreachable"
			if ct := pw.Action.DirectMethod.ConnectTimeout; ct > 0 {
				wait = fmt.Sprintf("a direct method reaches them only if they connect within connectTimeout %s, otherwise they count as unreachable", ct)
			}
			add(FindingOffline, w.Name, "%d of %d devices are offline now: %s", *w.Offline, w.Devices, wait)
		}
	}
	if pv.out.Untargeted > 0 {
		add(FindingUntargeted, "", "%d of %d fleet devices are in no wave", pv.out.Untargeted, pv.out.FleetDevices)
	}
}

func pctOf(p float64) string {
	return pct(p / 100)
}
