package hubset_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubset"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

// benchChildEnv makes the test binary serve one emulated hub instead of running tests, so that each
// hub of a benchmark runs in a process of its own, as real hubs are apart from the client.
const benchChildEnv = "ROLLOUT_HUBSET_BENCH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(benchChildEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	os.Exit(m.Run())
}

// benchChild serves an emulator for the fleet, tier and units of spec, prints its connection string
// and stops when its standard input closes.
func benchChild(spec string) int {
	var s struct {
		Fleet, Tier string
		Units       int
	}
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fleet, err := emulator.LoadFleet(s.Fleet)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, Tier: s.Tier, Units: s.Units})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(srv.ConnectionString())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	srv.Close()
	return 0
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
	spec, _ := json.Marshal(map[string]any{"Fleet": file, "Tier": tier, "Units": units})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("emulator child: %v", err)
	}
	q, err := hubapi.TierQuotas(tier, units)
	if err != nil {
		b.Fatal(err)
	}
	c, err := hubapi.NewFromConnectionString(strings.TrimSpace(line), hubapi.Options{PlainHTTP: true, Quotas: &q})
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
