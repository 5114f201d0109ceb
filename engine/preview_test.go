package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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
				total += w.DeviceCount
			}
			if pv.Untargeted != pv.FleetDevices-total {
				t.Errorf("untargeted %d, want %d", pv.Untargeted, pv.FleetDevices-total)
			}
		})
	}
}
