package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
// Wave resolution is apply's own: the same resolver, over the device sets the preview resolved (or
// read from the state) instead of the store's. Its query is the one apply pages through (the plan's
// composed condition, plan.Condition) with the devices earlier waves took, and its list keeps what
// is not taken and falls in the wave's stable sample (InSample). A wave without
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
	// Hubs, for a plan with hubs, are its hubs' own clients by name: each hub's part is then
	// previewed on its hub, at its tier, and the preview adds the parts up (see preview_hubs.go).
	// MaxQueries bounds each hub's listing. Nil: the plan is previewed on Hub as one.
	Hubs map[string]HubTarget
}

// Preview is what `rollout apply` would do with a plan now. Its JSON form is the output of
// `rollout plan --format json`.
type Preview struct {
	Rollout  string     `json:"rollout"`
	PlanHash string     `json:"planHash"`
	Kind     ActionKind `json:"kind"` // the first wave's action
	Fleet    string     `json:"fleet"`
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
	// Hubs are the parts of a plan with hubs, one per hub in name order (see PreviewOptions.Hubs);
	// Tier then names each hub's.
	Hubs []HubPreview `json:"hubs,omitempty"`
}

// WavePreview is one wave of a Preview.
type WavePreview struct {
	Name string `json:"name"`
	// Condition is the wave's composed condition (plan.Condition): fleet AND target AND NOT (earlier
	// full waves' targets).
	Condition string     `json:"condition"`
	Percent   float64    `json:"percent"`
	Action    ActionKind `json:"action"`
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
	Hub      string        `json:"hub,omitempty"` // the hub it was found on, in a plan with hubs
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
	// rv resolves waves as apply does, over sets: the devices of every wave the preview resolved by id
	// (or read from the state); nil for a wave whose condition alone says what it takes.
	rv   resolver
	sets map[int][]string
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
	if len(p.Hubs) > 0 && o.Hubs != nil {
		return previewHubs(ctx, p, o)
	}
	pv := &previewer{PreviewOptions: o, p: p, listed: map[int]bool{}, overlap: map[int]map[int]int{},
		excl: map[int][]query.Expr{}, incl: map[int][]query.Expr{}, sets: map[int][]string{}}
	pv.rv = resolver{p: p, hub: o.Hub, quotas: o.Quotas, sets: func(w int) ([]string, error) { return pv.sets[w], nil }}
	pv.out = &Preview{Rollout: p.Name, PlanHash: p.Hash, Fleet: formatOrAll(p.Fleet), QueryBudget: o.MaxQueries,
		Tier: o.Estimate.Tier, Schedule: p.Schedule != nil, Kind: KindTwinUpdate, Findings: []Finding{}}
	if p.Waves[0].Action.DirectMethod != nil {
		pv.out.Kind = KindDirectMethod
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
	if o.Store != nil {
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
	if err := pv.configurationFindings(ctx); err != nil {
		return nil, err
	}
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

func (pv *previewer) wave(ctx context.Context, i int, sw *Wave) (*WavePreview, error) {
	pw := pv.p.Waves[i]
	w := &WavePreview{Name: pw.Name, Condition: query.Format(pv.p.Condition(i)), Percent: pw.Percent,
		Approval: pw.Approval, Exact: true, Sample: []string{}, Batches: []BatchPreview{}, Action: KindTwinUpdate}
	if pw.Action.DirectMethod != nil {
		w.Action = KindDirectMethod
	}
	if sw != nil {
		w.Status = sw.Status
	}
	var err error
	if w.Candidates, err = pv.count(ctx, pv.p.Condition(i)); err != nil {
		return nil, err
	}
	if err := pv.selected(ctx, i, w); err != nil {
		return nil, err
	}
	if pv.afterWholeFleet(i) {
		// Only in a plan's part on one hub (plan.OnHub): an earlier wave took the hub's whole fleet,
		// and apply subtracts the devices it stored.
		w.Overlap, pv.sets[i] = w.Selected, []string{}
		w.Estimate = pv.estimate(i, w, sw)
		return w, nil
	}
	paths := patchPaths(pw.Action.TwinUpdate)
	ids, base, err := pv.devices(ctx, i, w, sw, len(paths))
	if err != nil {
		return nil, err
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
	if err := pv.health(ctx, i, w, base); err != nil {
		return nil, err
	}
	w.Estimate = pv.estimate(i, w, sw)
	return w, nil
}

// selected counts what fleet AND target of wave i select before earlier waves are taken out, and how
// much of it earlier targets take (Selected, Overlap), and the devices that NOT over a missing
// property leaves out of the composed condition (Skipped).
func (pv *previewer) selected(ctx context.Context, i int, w *WavePreview) error {
	w.Selected = w.Candidates
	t := pv.takenBefore(i)
	if t == nil {
		return nil
	}
	var err error
	if w.Selected, err = pv.count(ctx, pv.conds[i]); err != nil {
		return err
	}
	taken := 0
	if w.Selected > 0 {
		if taken, err = pv.count(ctx, query.And(pv.conds[i], t)); err != nil {
			return err
		}
	}
	w.Overlap = taken
	w.Skipped = max(0, w.Selected-taken-w.Candidates)
	return nil
}

// devices works out wave i's devices (w.Devices, and Stored, Exact), the cheapest exact way the
// preview has: the stored list of a resolved wave, its condition's count when no earlier sample can
// overlap it, a count less the earlier samples' ids, or listing it as apply would (estimated over the
// query budget). It returns the ids when they were listed, and base, what counts over the condition
// are scaled from: the candidates, or for a wave whose earlier samples were subtracted by id or that
// was listed, its devices.
func (pv *previewer) devices(ctx context.Context, i int, w *WavePreview, sw *Wave, paths int) (ids []string, base int, err error) {
	pw := pv.p.Waves[i]
	base = w.Candidates
	switch {
	case sw != nil && sw.Resolved:
		if err := pv.Store.View(func(tx *Tx) error {
			var err error
			ids, err = tx.Devices(i)
			return err
		}); err != nil {
			return nil, 0, err
		}
		w.Stored, w.Devices = true, len(ids)
		pv.sets[i], pv.listed[i] = ids, true
	case pw.Percent >= 100 && !pv.overlapsSample(ctx, i):
		w.Devices = w.Candidates
		pv.sets[i] = nil // what it takes, no later condition selects
	case pw.Percent >= 100 && pv.excludeByID(i, paths):
		if w.Devices, err = pv.countLess(ctx, i, pv.p.Condition(i)); err != nil {
			return nil, 0, err
		}
		w.Overlap += w.Candidates - w.Devices
		base = w.Devices
		pv.sets[i] = nil
	default:
		ids, err = pv.list(ctx, i, w.Candidates)
		switch {
		case errors.Is(err, ErrQueryBudget):
			w.Exact = false
			w.Devices = pv.estimateSample(i, w.Candidates)
			pv.sets[i] = nil
			return nil, base, nil
		case err != nil:
			return nil, 0, err
		}
		w.Devices = len(ids)
		for k := 0; k < i; k++ {
			if pv.p.Waves[k].Percent < 100 && !pv.listed[k] {
				w.Exact = false // an earlier sample was estimated, so what it took is unknown
			}
		}
		if pv.includeByID(i, paths, ids) {
			base = w.Devices
		}
	}
	return ids, base, nil
}

// health counts, among wave i's devices, those that already satisfy its verify condition and, for a
// direct method, those offline now.
func (pv *previewer) health(ctx context.Context, i int, w *WavePreview, base int) error {
	pw, cond := pv.p.Waves[i], pv.p.Condition(i)
	if w.Devices > 0 && pw.Verify != nil {
		v, err := parseOrAll(pw.Verify.Condition)
		if err != nil {
			return err
		}
		if w.VerifyHolds, err = pv.countScaled(ctx, i, query.And(cond, v), w.Devices, base); err != nil {
			return err
		}
	}
	if w.Devices > 0 && pw.Action.DirectMethod != nil {
		off, err := query.ParseCondition("connectionState = 'Disconnected'")
		if err != nil {
			return err
		}
		if w.Offline, err = pv.countScaled(ctx, i, query.And(cond, off), w.Devices, base); err != nil {
			return err
		}
	}
	return nil
}
