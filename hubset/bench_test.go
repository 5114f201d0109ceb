package hubset_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubset"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

func TestMain(m *testing.M) {
	emulatortest.ServeChildIfAsked()
	os.Exit(m.Run())
}

// startChild starts an emulator process of n devices at tier and units and returns a client paced
// to them.
func startChild(b *testing.B, prefix, tier string, units, n int) (*hubapi.Client, hubapi.Quotas) {
	b.Helper()
	fleet := fmt.Sprintf("groups:\n  - {name: all, count: %d, idPrefix: %s-, behavior: {converge: {failure: 100%%}}}\n", n, prefix)
	file := filepath.Join(b.TempDir(), "fleet.yaml")
	if err := os.WriteFile(file, []byte(fleet), 0o600); err != nil {
		b.Fatal(err)
	}
	child := emulatortest.StartChild(b, file, tier, units)
	q, err := hubapi.TierQuotas(tier, units)
	if err != nil {
		b.Fatal(err)
	}
	c, err := hubapi.NewFromConnectionString(child.ConnectionString, hubapi.Options{PlainHTTP: true, Quotas: &q})
	if err != nil {
		b.Fatal(err)
	}
	return c, q
}

// BenchmarkTwoHubsS3TenUnits: one twin-update wave over two hubs, each emulated at S3 with 10 units
// (500 job device operations per second) in a process of its own, 5,000 devices each. One hub's
// floor is 10 s, the sum of both 20 s; x-floor is the time over one hub's floor (the target: at
// most 1.15).
func BenchmarkTwoHubsS3TenUnits(b *testing.B) {
	const plan = `
version: 1
name: two-hubs-bench
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
hubs:
  eu: {connection: env:EU, tier: S3, units: 10}
  us: {connection: env:US, tier: S3, units: 10}
defaults:
  timeout: 30m
  batch: {size: 1000, growth: 2}
  success: {minSuccessRate: 100%}
waves:
  - {name: all, target: "*"}
`
	for range b.N {
		eu, qeu := startChild(b, "eu", "S3", 10, 5000)
		us, qus := startChild(b, "us", "S3", 10, 5000)
		set := hubset.New(map[string]engine.Hub{"eu": eu, "us": us})
		p := enginetest.Plan(b, plan)
		store, err := engine.OpenStore(context.Background(), bolt.New(b.TempDir()), p.Name)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := engine.Apply(context.Background(), p, engine.Options{Hub: set, Store: store, Quotas: hubset.Quotas([]hubapi.Quotas{qeu, qus})})
		elapsed := time.Since(start)
		if err != nil || res.Status != engine.StatusDone {
			b.Fatalf("apply: %v %+v", err, res)
		}
		st, _ := store.Load()
		if n := st.Waves[0].Counts.Succeeded; n != 10000 {
			b.Fatalf("%d devices succeeded, want 10000", n)
		}
		b.ReportMetric(elapsed.Seconds()/10, "x-floor")
		b.ReportMetric(elapsed.Seconds(), "s")
	}
}
