package engine

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// A plan with hubs is previewed hub by hub: each hub's part (plan.OnHub: the waves that run there,
// each with its condition on that hub) is previewed on that hub's own client, at that hub's tier, as
// a plan without hubs would be; the total adds the parts up. A wave's devices, diff and health are
// the sums of its parts; its estimate is the longest of its parts', since the parts run side by side;
// the rollout's estimate is the sum of its waves'. Conflicting configurations are found on each hub
// and reported naming it. With a state, the total says where the rollout stands and drops the
// estimates of waves that ended; the parts count each wave's devices as the hub holds them now, not
// the lists apply stored.

// HubTarget is one hub of a plan with hubs, for PreviewOptions.Hubs.
type HubTarget struct {
	Hub Hub // the hub's own client: device ids as the hub knows them
	// Quotas are the hub's limits (page size, query length); Estimate what its part's estimate
	// assumes (zero: Quotas).
	Quotas, Estimate hubapi.Quotas
}

// HubPreview is one hub's part of the preview of a plan with hubs.
type HubPreview struct {
	Hub          string `json:"hub"`
	Tier         string `json:"tier"` // the tier its estimate assumes
	FleetDevices int    `json:"fleetDevices"`
	Untargeted   int    `json:"untargeted"`
	// Waves are the waves that run on the hub, with their part there; sample ids are HUB/DEVICE.
	Waves    []WavePreview `json:"waves"`
	Estimate Estimate      `json:"estimate"`
	Queries  int           `json:"queries"`
}

// previewHubs is PreviewPlan for a plan with hubs (see above); o has its defaults set.
func previewHubs(ctx context.Context, p *plan.Plan, o PreviewOptions) (*Preview, error) {
	parts, err := previewParts(ctx, p, o)
	if err != nil {
		return nil, err
	}
	pv := &previewer{PreviewOptions: o, p: p}
	pv.out = &Preview{Rollout: p.Name, PlanHash: p.Hash, Fleet: formatOrAll(p.Fleet), QueryBudget: o.MaxQueries,
		Schedule: p.Schedule != nil, Kind: KindTwinUpdate, Findings: []Finding{}}
	if p.Waves[0].Action.DirectMethod != nil {
		pv.out.Kind = KindDirectMethod
	}
	var st *State
	if o.Store != nil {
		if st, err = pv.state(); err != nil {
			return nil, err
		}
	}
	var tiers []string
	for _, hp := range parts {
		pv.out.Hubs = append(pv.out.Hubs, hp.HubPreview)
		pv.out.FleetDevices += hp.FleetDevices
		pv.out.Untargeted += hp.Untargeted
		pv.out.Queries += hp.Queries
		pv.out.QueryTime = max(pv.out.QueryTime, hp.queryTime)
		tiers = append(tiers, hp.Hub+" "+hp.Tier)
	}
	pv.out.Tier = strings.Join(tiers, ", ")
	for i := range p.Waves {
		var sw *Wave
		if st != nil && !pv.out.State.PlanChanged {
			sw = &st.Waves[i]
		}
		w := pv.sumWave(i, sw, parts)
		pv.out.Waves = append(pv.out.Waves, w)
		pv.out.Estimate = pv.out.Estimate.add(w.Estimate)
	}
	pv.findings()
	for _, hp := range parts {
		for _, f := range hp.findings {
			if f.Code == FindingConfiguration {
				f.Hub = hp.Hub
				pv.out.Findings = append(pv.out.Findings, f)
			}
		}
	}
	return pv.out, nil
}

// hubPart is one hub's preview, with what the total takes from it beyond its HubPreview.
type hubPart struct {
	HubPreview
	findings  []Finding
	queryTime time.Duration
}

// previewParts previews each hub's part of p concurrently, in the order of p.Hubs.
func previewParts(ctx context.Context, p *plan.Plan, o PreviewOptions) ([]hubPart, error) {
	parts := make([]hubPart, len(p.Hubs))
	errs := make([]error, len(p.Hubs))
	for _, h := range p.Hubs {
		if _, ok := o.Hubs[h.Name]; !ok || p.OnHub(h.Name) == nil {
			return nil, fmt.Errorf("preview: no client for hub %s, or no wave runs on it", h.Name)
		}
	}
	var wg sync.WaitGroup
	for i, h := range p.Hubs {
		t, on := o.Hubs[h.Name], p.OnHub(h.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, err := PreviewPlan(ctx, on, PreviewOptions{Hub: t.Hub, Quotas: t.Quotas, Estimate: t.Estimate, Now: o.Now,
				SampleSize: o.SampleSize, MaxQueries: o.MaxQueries})
			if err != nil {
				errs[i] = fmt.Errorf("hub %s: %w", h.Name, err)
				return
			}
			for j := range sub.Waves {
				for k, id := range sub.Waves[j].Sample {
					sub.Waves[j].Sample[k] = plan.QualifyID(h.Name, id)
				}
			}
			parts[i] = hubPart{HubPreview: HubPreview{Hub: h.Name, Tier: sub.Tier, FleetDevices: sub.FleetDevices,
				Untargeted: sub.Untargeted, Waves: sub.Waves, Estimate: sub.Estimate, Queries: sub.Queries},
				findings: sub.Findings, queryTime: sub.QueryTime}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// sumWave adds up wave i's parts on its hubs; sw is its state, when apply started the rollout.
func (pv *previewer) sumWave(i int, sw *Wave, parts []hubPart) WavePreview {
	pw := pv.p.Waves[i]
	w := WavePreview{Name: pw.Name, Condition: query.Format(pv.p.Condition(i)), Percent: pw.Percent,
		Approval: pw.Approval, Exact: true, Sample: []string{}, Action: KindTwinUpdate}
	if pw.Action.DirectMethod != nil {
		w.Action = KindDirectMethod
	}
	var samples [][]string
	for _, hp := range parts {
		k := slices.IndexFunc(hp.Waves, func(x WavePreview) bool { return x.Name == pw.Name })
		if k < 0 {
			continue
		}
		x := hp.Waves[k]
		w.Candidates += x.Candidates
		w.Selected += x.Selected
		w.Overlap += x.Overlap
		w.Skipped += x.Skipped
		w.Devices += x.Devices
		w.Exact = w.Exact && x.Exact
		w.DiffEstimated = w.DiffEstimated || x.DiffEstimated
		w.VerifyHolds = addCount(w.VerifyHolds, x.VerifyHolds)
		w.Offline = addCount(w.Offline, x.Offline)
		w.Diff = mergeDiff(w.Diff, x.Diff)
		w.Estimate = longest(w.Estimate, x.Estimate)
		samples = append(samples, x.Sample)
	}
	w.Sample = append(w.Sample, interleave(samples)...)
	w.Sample = w.Sample[:min(len(w.Sample), pv.SampleSize)]
	w.Batches = pv.batches(nil, w.Devices, w.Sample, pw.Batch)
	if sw != nil {
		w.Status = sw.Status
		if sw.Status == StatusDone || sw.Status == StatusFailed {
			w.Estimate = Estimate{}
		}
	}
	return w
}

func addCount(a, b *int) *int {
	if b == nil {
		return a
	}
	n := *b
	if a != nil {
		n += *a
	}
	return &n
}

// longest is the estimate of two parts that run side by side: each figure the larger of the two.
func longest(a, b Estimate) Estimate {
	return Estimate{Resolve: max(a.Resolve, b.Resolve), Snapshot: max(a.Snapshot, b.Snapshot), Jobs: max(a.Jobs, b.Jobs),
		Bake: max(a.Bake, b.Bake), Verify: max(a.Verify, b.Verify), Total: max(a.Total, b.Total), Worst: max(a.Worst, b.Worst),
		Approvals: max(a.Approvals, b.Approvals)}
}

// mergeDiff adds b's changes to a's, path by path, the current values most devices first.
func mergeDiff(a, b []PathDiff) []PathDiff {
	for _, d := range b {
		k := slices.IndexFunc(a, func(x PathDiff) bool { return x.Path == d.Path })
		if k < 0 {
			a = append(a, PathDiff{Path: d.Path, To: d.To, From: slices.Clone(d.From), NoOps: d.NoOps})
			continue
		}
		a[k].NoOps += d.NoOps
		for _, v := range d.From {
			if j := slices.IndexFunc(a[k].From, func(x ValueCount) bool { return x.Value == v.Value }); j >= 0 {
				a[k].From[j].Devices += v.Devices
			} else {
				a[k].From = append(a[k].From, v)
			}
		}
		sort.SliceStable(a[k].From, func(i, j int) bool { return a[k].From[i].Devices > a[k].From[j].Devices })
	}
	return a
}

// afterWholeFleet reports whether an earlier full wave of wave i targets every fleet device. Load
// refuses a wave after such a wave, but a plan's part on one hub can hold one (a wave over every hub
// after a wave of all of one hub's devices); there it takes nothing.
func (pv *previewer) afterWholeFleet(i int) bool {
	for k, e := range pv.p.Waves[:i] {
		if _, all := pv.targets[k].(query.All); all && e.Percent >= 100 {
			return true
		}
	}
	return false
}
