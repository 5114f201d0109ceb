//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

// The crash test SIGKILLs real `rollout apply` processes at random moments against an emulator running
// in the test process (HTTPS on loopback, real SAS), runs apply again until it finishes, and compares
// what the devices saw with an uninterrupted run: per-device direct-method invocations and final twins.

const crashMethodFleet = `
groups:
  - name: canary
    count: 6
    idPrefix: canary-
    tags: {ring: canary}
    behavior: {offline: 17%, methodLatency: 2ms}
  - name: eu
    count: 24
    idPrefix: eu-
    tags: {ring: eu}
    behavior: {methodFailure: 25%, methodLatency: 2ms}
  - name: us
    count: 10
    idPrefix: us-
    tags: {ring: us}
`

// Wave eu passes its first batches and fails its gate in a later one, so a run goes through forward
// jobs, gates and a compensating rollback.
const crashMethodPlan = `
version: 1
name: crash-method
action:
  directMethod: {name: install, payload: {v: 2}, responseTimeout: 5s}
defaults:
  timeout: 30s
  batch: {size: 3, growth: 2}
  success: {minSuccessRate: 50%, maxFailures: 4, minDevices: 1}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: eu, target: "tags.ring = 'eu'"}
  - {name: us, target: "*"}
onFailure: rollback
rollback:
  directMethod: {name: revert, payload: {}}
`

const crashTwinFleet = `
groups:
  - name: a
    count: 8
    idPrefix: a-
    tags: {ring: a, channel: beta}
    desired: {firmware: {version: "1.0", uri: old}}
    behavior: {converge: {delay: 5ms}}
  - name: b
    count: 12
    idPrefix: b-
    tags: {ring: b}
    behavior: {converge: {delay: 5ms}}
  - name: c
    count: 8
    idPrefix: c-
    tags: {ring: c}
    behavior: {converge: {failure: 100%}}
devices:
  - {deviceId: odd-1, tags: {ring: b, channel: {x: 1}}, properties: {desired: {firmware: 3}}}
`

// Wave c never reports the firmware back, so its verify fails and every batch is restored.
const crashTwinPlan = `
version: 1
name: crash-twin
action:
  twinUpdate:
    tags: {channel: stable}
    desired: {firmware: {version: "2.0"}}
defaults:
  timeout: 30s
  batch: {size: 3, growth: 2}
  success: {minSuccessRate: 100%, minDevices: 1}
  verify: {condition: "properties.reported.firmware.version = '2.0'", minRate: 100%, within: 2s}
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "tags.ring = 'b'"}
  - name: c
    target: "*"
    verify: {condition: "properties.reported.firmware.version = '2.0'", minRate: 100%, within: 400ms}
onFailure: rollback
`

func buildRollout(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rollout")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// observed is what the devices of a hub saw.
type observed struct {
	invocations map[string]int
	twins       map[string]string
}

func observe(t *testing.T, srv *emulator.Server) observed {
	t.Helper()
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rows, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices", 100))
	if err != nil {
		t.Fatal(err)
	}
	o := observed{invocations: map[string]int{}, twins: map[string]string{}}
	for _, row := range rows {
		tw, err := c.GetTwin(ctx, row.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		desired := map[string]any{}
		if tw.Properties != nil {
			for k, v := range tw.Properties.Desired {
				if !strings.HasPrefix(k, "$") {
					desired[k] = v
				}
			}
		}
		b, _ := json.Marshal(map[string]any{"tags": tw.Tags, "desired": desired})
		o.twins[row.DeviceID] = string(b)
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations > 0 {
			o.invocations[id] = d.MethodInvocations
		}
	}
	return o
}

type crashScenario struct {
	name, fleet, plan string
	wantExit          int
}

// crashBackend is where a trial keeps the rollout's state.
type crashBackend struct {
	name string
	// state gives a trial's --state value, under the trial's directory dir.
	state func(dir string) string
	env   []string
	// afterKill runs after apply was killed: a shared state's lease outlives its holder by up to a
	// minute, so the operator's `rollout unlock --yes` frees it for the next run at once (the lease's
	// own lapse is TestHostLoss's).
	afterKill func(t *testing.T, state, rollout string)
}

var localBackend = crashBackend{name: "local", state: func(dir string) string { return filepath.Join(dir, "state") },
	afterKill: func(*testing.T, string, string) {}}

// trial runs the plan on a fresh emulator, killing apply after random delays up to maxKill (no kill
// when maxKill is 0) until a run ends by itself. It returns what the devices saw, the number of kills
// and the last run's exit code.
func trial(t *testing.T, bin string, be crashBackend, sc crashScenario, rng *rand.Rand, maxKill time.Duration) (observed, int, int) {
	t.Helper()
	dir := t.TempDir()
	state := be.state(dir)
	fleet, err := emulator.ParseFleet("fleet.yaml", []byte(sc.fleet))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, TLS: true, CertDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(sc.plan), 0o600); err != nil {
		t.Fatal(err)
	}
	kills, code := applyUntilEnd(t, rng, maxKill, func() *exec.Cmd {
		cmd := exec.Command(bin, "apply", "--state", state, "--tier", "unlimited",
			"--ca-file", srv.CAFile(), "--output", "json", planFile)
		cmd.Env = append(append(os.Environ(), be.env...), "IOTHUB_CONNECTION_STRING="+srv.ConnectionString())
		return cmd
	}, func() { be.afterKill(t, state, sc.planName()) })
	return observe(t, srv), kills, code
}

// applyUntilEnd starts the commands newCmd gives until one ends by itself, killing each of the first
// 12 runs with SIGKILL after a random delay up to maxKill (none when maxKill is 0) and calling
// afterKill after each kill. It returns the kills and the last run's exit code; a run that exits 1
// or 4 (invalid, or a hub or state error) or hangs fails the test.
func applyUntilEnd(t *testing.T, rng *rand.Rand, maxKill time.Duration, newCmd func() *exec.Cmd, afterKill func()) (int, int) {
	t.Helper()
	kills := 0
	for run := 0; ; run++ {
		if run > 200 {
			t.Fatal("apply never finished")
		}
		cmd := newCmd()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var timer <-chan time.Time
		if maxKill > 0 && run < 12 {
			timer = time.After(time.Duration(rng.Int64N(int64(maxKill))))
		}
		select {
		case err := <-exited:
			code := 0
			if err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					t.Fatal(err)
				}
				code = ee.ExitCode()
			}
			if code == exitHub || code == exitInvalid {
				t.Fatalf("run %d exited %d: %s", run, code, stderr.String())
			}
			return kills, code
		case <-timer:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			kills++
			afterKill()
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			t.Fatalf("run %d hung: %s", run, stderr.String())
		}
	}
}

func TestCrashAtRandomMoments(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rollout and runs it dozens of times")
	}
	crashTrials(t, buildRollout(t), localBackend, 14)
}

// planName is the name the scenario's plan gives its rollout.
func (sc crashScenario) planName() string {
	_, rest, _ := strings.Cut(sc.plan, "\nname: ")
	name, _, _ := strings.Cut(rest, "\n")
	return name
}

// crashTrials runs trialsPerScenario killed trials of each scenario with the state in be, and
// checks each against an uninterrupted run.
func crashTrials(t *testing.T, bin string, be crashBackend, trialsPerScenario int) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	scenarios := []crashScenario{
		{"method", crashMethodFleet, crashMethodPlan, exitRolledBack},
		{"twin", crashTwinFleet, crashTwinPlan, exitRolledBack},
	}
	totalKills, killedTrials := 0, 0
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			want, _, code := trial(t, bin, be, sc, rng, 0)
			clean := time.Since(start)
			if code != sc.wantExit {
				t.Fatalf("uninterrupted run exited %d, want %d", code, sc.wantExit)
			}
			if len(want.invocations) == 0 && sc.name == "method" {
				t.Fatal("the uninterrupted run invoked no method")
			}
			for i := range trialsPerScenario {
				got, kills, code := trial(t, bin, be, sc, rng, clean)
				totalKills += kills
				if kills > 0 {
					killedTrials++
				}
				if code != sc.wantExit {
					t.Errorf("trial %d (%d kills): exit %d, want %d", i, kills, code, sc.wantExit)
				}
				if !reflect.DeepEqual(got.invocations, want.invocations) {
					t.Errorf("trial %d (%d kills): method invocations differ from the uninterrupted run:\n%s", i, kills,
						diffCounts(want.invocations, got.invocations))
				}
				if !reflect.DeepEqual(got.twins, want.twins) {
					for id := range want.twins {
						if want.twins[id] != got.twins[id] {
							t.Errorf("trial %d (%d kills): %s twin %s, uninterrupted %s", i, kills, id, got.twins[id], want.twins[id])
						}
					}
				}
			}
		})
	}
	t.Logf("%s state: %d apply processes killed in %d trials", be.name, totalKills, killedTrials)
	if killedTrials < 20 {
		t.Errorf("only %d trials had a kill land; the test needs at least 20", killedTrials)
	}
}

func diffCounts(want, got map[string]int) string {
	var lines []string
	for id := range want {
		if want[id] != got[id] {
			lines = append(lines, fmt.Sprintf("  %s: %d, uninterrupted %d", id, got[id], want[id]))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: %d, uninterrupted 0", id, got[id]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestInterruptStopsAtSafePoint sends a real SIGINT to rollout apply while it bakes: it must stop at
// a safe point with exit 130, and the next run must continue to the end.
func TestInterruptStopsAtSafePoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rollout")
	}
	bin := buildRollout(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(`
groups:
  - {name: a, count: 3, idPrefix: a-, tags: {ring: a}}
  - {name: b, count: 3, idPrefix: b-, tags: {ring: b}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(`
version: 1
name: interrupted
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 100%}
  bake: 30s
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "*", bake: 0s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := func(interrupt bool) (int, string) {
		cmd := exec.Command(bin, "apply", "--emulate", "fleet.yaml", "--state", "state", "plan.yaml")
		cmd.Dir = dir
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if interrupt {
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(out.String(), "waiting for the bake") {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("never started baking:\n%s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = cmd.Process.Signal(os.Interrupt)
		}
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	code, out := apply(true)
	if code != exitInterrupted || !strings.Contains(out, "stopped at a safe point") {
		t.Fatalf("interrupted run: exit %d\n%s", code, out)
	}
	// The bake started before the interrupt and lasts 30 s, so the next run waits it out; a blocking
	// run is what cron would not do, so only check that it resumes where it was, then stop it again.
	code, out = apply(true)
	if code != exitInterrupted || strings.Contains(out, "wave a: 3 devices") {
		t.Fatalf("resumed run: exit %d (it must not start wave a again)\n%s", code, out)
	}
}
