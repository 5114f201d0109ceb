package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

var update = flag.Bool("update", false, "rewrite testdata/preview/*.golden from the current output")

// previewHub starts the emulator with the preview fleet.
func previewHub(tb testing.TB) (*emulator.Server, *hubapi.Client) {
	tb.Helper()
	data, err := os.ReadFile("testdata/preview/fleet.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return enginetest.Hub(tb, string(data), emulator.Options{})
}

func loadPlan(tb testing.TB, path string) *plan.Plan {
	tb.Helper()
	p, ds := plan.LoadFile(path)
	if ds.HasErrors() {
		tb.Fatalf("%s: %v", path, ds)
	}
	return p
}

func s1(tb testing.TB) hubapi.Quotas {
	tb.Helper()
	q, err := hubapi.TierQuotas("S1", 1)
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

func preview(tb testing.TB, srv *emulator.Server, c *hubapi.Client, p *plan.Plan, o engine.PreviewOptions) *engine.Preview {
	tb.Helper()
	o.Hub, o.Quotas = c, srv.Quotas()
	if o.Estimate.Tier == "" {
		o.Estimate = s1(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pv, err := engine.PreviewPlan(ctx, p, o)
	if err != nil {
		tb.Fatalf("PreviewPlan: %v", err)
	}
	return pv
}

func findingCodes(pv *engine.Preview) map[string][]string {
	m := map[string][]string{}
	for _, f := range pv.Findings {
		m[f.Code] = append(m[f.Code], f.Wave)
	}
	return m
}

// TestPreviewGolden previews each plan of testdata/preview against the emulator and compares the JSON
// preview with its golden file (refresh with -update).
func TestPreviewGolden(t *testing.T) {
	srv, c := previewHub(t)
	for _, name := range []string{"twin-canary", "percent", "method"} {
		t.Run(name, func(t *testing.T) {
			p := loadPlan(t, filepath.Join("testdata/preview", name+".yaml"))
			pv := preview(t, srv, c, p, engine.PreviewOptions{MaxFirstWave: 10})
			got, err := json.MarshalIndent(pv, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata/preview", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestPreviewGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("preview differs from %s (run with -update after checking):\n%s", golden, got)
			}
		})
	}
}

// noWaits turns a plan's waits off, so that Apply runs it through at once.
const twinNoWaits = `
version: 1
name: agree-twin
fleet: "tags.model = 'thermostat-x'"
action:
  twinUpdate:
    tags: {fwChannel: stable}
defaults:
  batch: {size: 100, growth: 4}
  success: {minSuccessRate: 0%, minDevices: 1}
waves:
  - name: canary
    target: "tags.ring = 'canary'"
  - name: eu-half
    target: "tags.region = 'eu'"
    percent: 50
  - name: main
    target: "tags.ring = 'main'"
  - name: rest
    target: "*"
`

// TestPreviewMatchesApply checks the preview's promise: every wave's count is the count of devices
// Apply resolves and stores, including devices without a property an earlier target tests, and a
// listed wave's sample is the start of the devices Apply stores.
func TestPreviewMatchesApply(t *testing.T) {
	for _, tc := range []struct {
		name string
		plan func(testing.TB) *plan.Plan
	}{
		{"percent", func(tb testing.TB) *plan.Plan { return loadPlan(tb, "testdata/preview/percent.yaml") }},
		{"twin-mixed", func(tb testing.TB) *plan.Plan { return enginetest.Plan(tb, twinNoWaits) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := previewHub(t)
			p := tc.plan(t)
			pv := preview(t, srv, c, p, engine.PreviewOptions{})
			r := newRun(t, c, srv.Quotas(), p.Name)
			r.opts.PollMin = 10 * time.Millisecond
			if res := r.apply(t, p); res.Status != engine.StatusDone {
				t.Fatalf("apply ended %s: %s", res.Status, res.Reason)
			}
			st := r.state(t)
			total := 0
			for i, w := range st.Waves {
				pw := pv.Waves[i]
				if !pw.Exact {
					t.Errorf("wave %s: count not exact", pw.Name)
				}
				if pw.Devices != w.DeviceCount {
					t.Errorf("wave %s: preview %d devices, apply resolved %d", pw.Name, pw.Devices, w.DeviceCount)
				}
				if len(pw.Batches) != len(w.Batches) {
					t.Errorf("wave %s: preview %d batches, apply ran %d", pw.Name, len(pw.Batches), len(w.Batches))
				}
				var ids []string
				if err := r.store.View(func(tx *engine.Tx) error {
					var err error
					ids, err = tx.Devices(i)
					return err
				}); err != nil {
					t.Fatal(err)
				}
				stored := map[string]bool{}
				for _, id := range ids {
					stored[id] = true
				}
				for _, id := range pw.Sample {
					if !stored[id] {
						t.Errorf("wave %s: sample id %s is not among the devices apply took", pw.Name, id)
					}
				}
				if p.Waves[i].Percent >= 100 && pw.Selected-pw.Overlap-pw.Skipped != pw.Devices {
					t.Errorf("wave %s: %d selected - %d overlap - %d skipped != %d devices", pw.Name, pw.Selected,
						pw.Overlap, pw.Skipped, pw.Devices)
				}
				for _, d := range pw.Diff {
					n := d.NoOps
					for _, v := range d.From {
						n += v.Devices
					}
					if n != pw.Devices && !pw.DiffEstimated {
						t.Errorf("wave %s: diff of %s covers %d devices, the wave has %d", pw.Name, d.Path, n, pw.Devices)
					}
				}
				total += w.DeviceCount
			}
			if pv.Untargeted != pv.FleetDevices-total {
				t.Errorf("untargeted %d, want %d", pv.Untargeted, pv.FleetDevices-total)
			}
		})
	}
}

// TestPreviewQueriesDoNotGrowWithTheFleet previews the same plan against a fleet and against one twenty
// times its size: counting and grouping need the same queries whatever the fleet's size, which is what
// keeps a preview of a million devices within minutes of an S1 hub's query quota.
func TestPreviewQueriesDoNotGrowWithTheFleet(t *testing.T) {
	data, err := os.ReadFile("testdata/preview/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.NewReplacer("count: 12", "count: 240", "count: 150", "count: 3000", "count: 230", "count: 4600",
		"count: 40", "count: 800").Replace(string(data))
	p := loadPlan(t, "testdata/preview/twin-canary.yaml")
	var queries []int
	var devices []int
	for _, fleet := range []string{string(data), big} {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{})
		pv := preview(t, srv, c, p, engine.PreviewOptions{})
		queries = append(queries, pv.Queries)
		devices = append(devices, pv.FleetDevices)
	}
	if devices[1] < 8000 {
		t.Fatalf("the big fleet has %d devices", devices[1])
	}
	if queries[0] != queries[1] {
		t.Errorf("queries: %d for %d devices, %d for %d devices", queries[0], devices[0], queries[1], devices[1])
	}
	if queries[0] > 40 {
		t.Errorf("a three-wave preview spent %d queries", queries[0])
	}
}

// TestPreviewBudget previews percent waves with a query budget too small to list their ids: the counts
// are estimated, marked so, and the listing never starts.
func TestPreviewBudget(t *testing.T) {
	srv, c := previewHub(t)
	p := loadPlan(t, "testdata/preview/percent.yaml")
	exact := preview(t, srv, c, p, engine.PreviewOptions{})
	pv := preview(t, srv, c, p, engine.PreviewOptions{MaxQueries: 12})
	if pv.Queries >= exact.Queries {
		t.Errorf("budgeted preview spent %d queries, the exact one %d", pv.Queries, exact.Queries)
	}
	codes := findingCodes(pv)
	if len(codes[engine.FindingEstimated]) == 0 {
		t.Errorf("no %s finding: %+v", engine.FindingEstimated, pv.Findings)
	}
	for i, w := range pv.Waves {
		if p.Waves[i].Percent >= 100 && !w.Exact && i == 0 {
			t.Errorf("wave %s: a full first wave needs no listing", w.Name)
		}
		if !w.Exact {
			want := exact.Waves[i].Devices
			if d := w.Devices - want; d < -want/3-2 || d > want/3+2 {
				t.Errorf("wave %s: estimated %d devices, exactly %d", w.Name, w.Devices, want)
			}
		}
	}
}

// TestPreviewState previews a rollout that apply started: resolved waves show their stored devices,
// the next step is apply's, and an edited plan is reported as changed.
func TestPreviewState(t *testing.T) {
	srv, c := previewHub(t)
	p := loadPlan(t, "testdata/preview/twin-canary.yaml")
	r := newRun(t, c, srv.Quotas(), p.Name)
	r.opts.NoWait = true
	r.opts.PollMin = 10 * time.Millisecond
	r.apply(t, p)
	st := r.state(t)
	pv := preview(t, srv, c, p, engine.PreviewOptions{Store: r.store})
	if pv.State == nil || pv.State.PlanChanged {
		t.Fatalf("state: %+v", pv.State)
	}
	step := engine.Next(p, st, func(string) bool { return false }, time.Now())
	if pv.State.Next != step.Kind || pv.State.NextWave != p.Waves[step.Wave].Name {
		t.Errorf("next: preview says %s %s, engine.Next says %s wave %d", pv.State.Next, pv.State.NextWave, step.Kind, step.Wave)
	}
	if w := pv.Waves[0]; !w.Stored || w.Devices != st.Waves[0].DeviceCount || w.Status != st.Waves[0].Status {
		t.Errorf("wave canary: %+v, state %+v", w, st.Waves[0])
	}
	if pv.State.Summary == "" {
		t.Error("no summary")
	}

	edited := enginetest.Plan(t, strings.Replace(mustRead(t, "testdata/preview/twin-canary.yaml"), "bake: 10m", "bake: 20m", 1))
	pv = preview(t, srv, c, edited, engine.PreviewOptions{Store: r.store})
	if pv.State == nil || !pv.State.PlanChanged || len(findingCodes(pv)[engine.FindingPlanChanged]) != 1 {
		t.Errorf("edited plan: state %+v, findings %+v", pv.State, pv.Findings)
	}
}

func mustRead(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
