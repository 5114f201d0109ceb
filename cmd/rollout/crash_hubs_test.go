//go:build unix

package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

// The crash trials across hubs: a plan with hubs runs on two emulators in the test process (HTTPS
// on loopback, one CA, real SAS), each reached through its own connection variable, and what the
// devices of both hubs saw after random SIGKILLs is compared with an uninterrupted run.

const crashHubsFleetEU = `
groups:
  - name: canary
    count: 4
    idPrefix: canary-
    tags: {ring: canary}
    behavior: {methodLatency: 2ms}
  - name: main
    count: 14
    idPrefix: dev-
    tags: {ring: main}
    behavior: {methodFailure: 25%, methodLatency: 2ms}
`

const crashHubsFleetUS = `
groups:
  - name: main
    count: 14
    idPrefix: dev-
    tags: {ring: main}
    behavior: {offline: 10%, methodFailure: 25%, methodLatency: 2ms}
  - name: late
    count: 6
    idPrefix: late-
    tags: {ring: late}
`

// The canary runs on eu only and gates wave main, which spans both hubs and fails its gate in a
// later batch: the rollback then runs on both hubs.
const crashHubsMethodPlan = `
version: 1
name: crash-hubs-method
hubs:
  eu: {connection: env:IOTHUB_EU}
  us: {connection: env:IOTHUB_US}
action:
  directMethod: {name: install, payload: {v: 2}, responseTimeout: 5s}
defaults:
  timeout: 30s
  batch: {size: 3, growth: 2}
  success: {minSuccessRate: 50%, maxFailures: 4, minDevices: 1}
waves:
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'"}
  - {name: main, target: "tags.ring = 'main'"}
  - {name: late, hubs: [us], target: "*"}
onFailure: rollback
rollback:
  directMethod: {name: revert, payload: {}}
`

// Wave main passes on both hubs; wave late's devices never report the firmware back, so its verify
// fails and every batch on both hubs is restored.
const crashHubsTwinPlan = `
version: 1
name: crash-hubs-twin
hubs:
  eu: {connection: env:IOTHUB_EU}
  us: {connection: env:IOTHUB_US}
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
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'"}
  - {name: main, target: "tags.ring = 'main'"}
  - name: late
    target: "*"
    verify: {condition: "properties.reported.firmware.version = '2.0'", minRate: 100%, within: 400ms}
onFailure: rollback
`

const crashHubsTwinFleetEU = `
groups:
  - {name: canary, count: 4, idPrefix: canary-, tags: {ring: canary}, desired: {firmware: {version: "1.0"}}, behavior: {converge: {delay: 5ms}}}
  - {name: main, count: 8, idPrefix: dev-, tags: {ring: main}, behavior: {converge: {delay: 5ms}}}
  - {name: late, count: 4, idPrefix: late-, tags: {ring: late}, behavior: {converge: {delay: 5ms}}}
`

const crashHubsTwinFleetUS = `
groups:
  - {name: main, count: 8, idPrefix: dev-, tags: {ring: main, channel: beta}, behavior: {converge: {delay: 5ms}}}
  - {name: late, count: 6, idPrefix: late-, tags: {ring: late}, behavior: {converge: {failure: 100%}}}
`

type crashHubsScenario struct {
	name, plan string
	fleets     map[string]string // by hub name
	wantExit   int
}

// observeHubs is what the devices of every hub saw, keyed by qualified id (HUB/DEVICE), and the hubs
// on which the rollout invoked a method or patched a twin.
func observeHubs(t *testing.T, srvs map[string]*emulator.Server) (observed, []string) {
	t.Helper()
	all := observed{invocations: map[string]int{}, twins: map[string]string{}}
	var touched []string
	for _, name := range sortedNames(srvs) {
		srv := srvs[name]
		if tot := srv.Stats().Totals; tot.MethodInvocations > 0 || tot.TwinPatches > 0 {
			touched = append(touched, name)
		}
		o := observe(t, srv)
		for id, n := range o.invocations {
			all.invocations[name+"/"+id] = n
		}
		for id, tw := range o.twins {
			all.twins[name+"/"+id] = tw
		}
	}
	return all, touched
}

// trialHubs runs the scenario on fresh emulators, one per hub, killing apply after random delays up
// to maxKill (none when 0) until a run ends by itself.
func trialHubs(t *testing.T, bin string, sc crashHubsScenario, rng *rand.Rand, maxKill time.Duration) (observed, []string, int, int) {
	t.Helper()
	dir := t.TempDir()
	srvs, env := startHubs(t, dir, sc.fleets)
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(sc.plan), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	kills, code := applyUntilEnd(t, rng, maxKill, func() *exec.Cmd {
		cmd := exec.Command(bin, "apply", "--state", state, "--ca-file", filepath.Join(dir, "ca.pem"), "--output", "json", planFile)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}, func() {})
	o, touched := observeHubs(t, srvs)
	return o, touched, kills, code
}

// TestCrashAcrossHubs: at least 20 trials with a kill that landed, each ending as the uninterrupted
// run did, with the same method invocations per device on both hubs (none invoked twice) and the
// same final twins.
func TestCrashAcrossHubs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rollout and runs it dozens of times")
	}
	bin := buildRollout(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	scenarios := []crashHubsScenario{
		{"method", crashHubsMethodPlan, map[string]string{"eu": crashHubsFleetEU, "us": crashHubsFleetUS}, exitRolledBack},
		{"twin", crashHubsTwinPlan, map[string]string{"eu": crashHubsTwinFleetEU, "us": crashHubsTwinFleetUS}, exitRolledBack},
	}
	killedTrials := 0
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			want, touched, _, code := trialHubs(t, bin, sc, rng, 0)
			clean := time.Since(start)
			if code != sc.wantExit {
				t.Fatalf("uninterrupted run exited %d, want %d", code, sc.wantExit)
			}
			if !reflect.DeepEqual(touched, []string{"eu", "us"}) {
				t.Fatalf("the uninterrupted run changed devices on hubs %v only; the trials need both", touched)
			}
			for i := range 14 {
				got, _, kills, code := trialHubs(t, bin, sc, rng, clean)
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
				for id := range want.twins {
					if want.twins[id] != got.twins[id] {
						t.Errorf("trial %d (%d kills): %s twin %s, uninterrupted %s", i, kills, id, got.twins[id], want.twins[id])
					}
				}
			}
		})
	}
	t.Logf("%d trials had a kill land", killedTrials)
	if killedTrials < 20 {
		t.Errorf("only %d trials had a kill land; the test needs at least 20", killedTrials)
	}
}
