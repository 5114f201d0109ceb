package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubset"
)

const unreachableFleetEU = `
groups:
  - {name: canary, count: 3, idPrefix: canary-, tags: {ring: canary}, behavior: {methodLatency: 2ms}}
  - {name: main, count: 8, idPrefix: dev-, tags: {ring: main}, behavior: {methodLatency: 2ms}}
`

const unreachableFleetUS = `
groups:
  - {name: main, count: 8, idPrefix: dev-, tags: {ring: main}, behavior: {methodLatency: 2ms}}
`

// The canary bakes on eu; hub us is stopped during the bake, so wave main, over both hubs, meets it
// unreachable.
const unreachablePlan = `
version: 1
name: hub-down
hubs:
  eu: {connection: env:IOTHUB_EU}
  us: {connection: env:IOTHUB_US}
action:
  directMethod: {name: install, payload: {v: 2}}
defaults:
  batch: {size: 4, growth: 2}
  success: {minSuccessRate: 100%, minDevices: 1}
waves:
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'", bake: 2s}
  - {name: main, target: "tags.ring = 'main'"}
onFailure: halt
`

// TestHubUnreachableMidRollout stops one of two hubs mid-rollout: apply retries its calls a bounded
// number of times, then exits 4 naming the hub; once the hub is back, the same command continues
// to done, and every device was invoked exactly once.
func TestHubUnreachableMidRollout(t *testing.T) {
	hubBackoff = [2]time.Duration{5 * time.Millisecond, 20 * time.Millisecond}
	t.Cleanup(func() { hubBackoff = [2]time.Duration{} })
	dir := t.TempDir()
	srvs, envList := startHubs(t, dir, map[string]string{"eu": unreachableFleetEU, "us": unreachableFleetUS})
	env := envOf(envList)
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(unreachablePlan), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"apply", "--state", filepath.Join(dir, "state"), "--ca-file", filepath.Join(dir, "ca.pem"), "--output", "json", planFile}
	// Stop hub us while the canary bakes. The rollout has not touched it yet (no job, no twin
	// change), so a new emulator of its fleet on its address is the same hub back.
	stderr, done := applyUntilEvent(t, args, env, `"waiting"`, "the canary baked")
	us := srvs["us"]
	if tot := us.Stats().Totals; tot.MethodInvocations != 0 || tot.TwinPatches != 0 {
		t.Fatalf("hub us was changed before wave main: %+v", tot)
	}
	addr := strings.TrimPrefix(us.URL(), "https://")
	us.Close()

	code := <-done
	if code != exitHub {
		t.Fatalf("apply with hub us down exited %d, want %d\n%s", code, exitHub, stderr.String())
	}
	if !strings.Contains(stderr.String(), "hub us:") || !strings.Contains(stderr.String(), "once hub us answers, run the same command again") {
		t.Errorf("the error does not name hub us, or not what to do:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "SharedAccessKey") {
		t.Errorf("the error shows a connection string:\n%s", stderr.String())
	}

	fleet, err := emulator.ParseFleet("us.yaml", []byte(unreachableFleetUS))
	if err != nil {
		t.Fatal(err)
	}
	back, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, TLS: true, CertDir: dir, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	srvs["us"] = back
	var out, errOut bytes.Buffer
	if code := mainEnv(args, nil, &out, &errOut, func(k string) string { return env[k] }); code != exitOK {
		t.Fatalf("apply after hub us is back exited %d\n%s", code, errOut.String())
	}
	for name, srv := range srvs {
		for id, d := range srv.Stats().Device {
			if d.MethodInvocations != 1 {
				t.Errorf("%s/%s: %d method invocations, want 1", name, id, d.MethodInvocations)
			}
		}
	}
	if n := len(srvs["us"].Stats().Device); n != 8 {
		t.Errorf("hub us: %d devices invoked after it came back, want 8", n)
	}
	if n := len(srvs["eu"].Stats().Device); n != 11 {
		t.Errorf("hub eu: %d devices invoked, want 11", n)
	}
}

const unreachableTwinPlan = `
version: 1
name: hub-down-twin
hubs:
  eu: {connection: env:IOTHUB_EU}
  us: {connection: env:IOTHUB_US}
action:
  twinUpdate: {desired: {mode: eco}}
defaults:
  batch: {size: 4, growth: 2}
  success: {minSuccessRate: 100%, minDevices: 1}
waves:
  - {name: main, target: "tags.ring = 'main'"}
onFailure: halt
`

// TestHubUnreachableBetweenJobParts stops hub us once the wave's first job has its parts, keeping
// its twins and jobs in its data file: polling that job, or creating the next one (whose part on eu
// is then made and on us not), fails on us, and apply exits 4 naming it. With us back on its address
// from that file, the same command finds the parts that exist, makes the missing ones, and ends done
// with every twin on both hubs updated.
func TestHubUnreachableBetweenJobParts(t *testing.T) {
	hubBackoff = [2]time.Duration{5 * time.Millisecond, 20 * time.Millisecond}
	t.Cleanup(func() { hubBackoff = [2]time.Duration{} })
	dir := t.TempDir()
	dataFile := filepath.Join(dir, "us-hub.json")
	fleets := map[string]string{"eu": unreachableFleetEU, "us": unreachableFleetUS}
	srvs, envList := startHubs(t, dir, fleets, func(hub string, o *emulator.Options) {
		if hub == "us" {
			o.DataFile = dataFile
		}
	})
	env := envOf(envList)
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(unreachableTwinPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"apply", "--state", filepath.Join(dir, "state"), "--ca-file", filepath.Join(dir, "ca.pem"), "--output", "json", planFile}
	stderr, done := applyUntilEvent(t, args, env, `"jobCreated"`, "it created a job")
	addr := strings.TrimPrefix(srvs["us"].URL(), "https://")
	if err := srvs["us"].Close(); err != nil {
		t.Fatal(err)
	}
	// The wave has three batches, each a job with a part on us (its devices are interleaved by hub),
	// and a batch takes at least a job poll: the rollout cannot end before us is stopped.
	code := <-done
	t.Logf("apply with hub us down:\n%s", stderr.String())
	if code != exitHub || !strings.Contains(stderr.String(), "hub us:") {
		t.Fatalf("apply with hub us down exited %d, want %d naming hub us\n%s", code, exitHub, stderr.String())
	}
	fleet, err := emulator.ParseFleet("us.yaml", []byte(unreachableFleetUS))
	if err != nil {
		t.Fatal(err)
	}
	back, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, TLS: true, CertDir: dir, Addr: addr, DataFile: dataFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	var out, errOut bytes.Buffer
	if code := mainEnv(args, nil, &out, &errOut, func(k string) string { return env[k] }); code != exitOK {
		t.Fatalf("apply after hub us is back exited %d\n%s", code, errOut.String())
	}
	for name, srv := range map[string]*emulator.Server{"eu": srvs["eu"], "us": back} {
		o := observe(t, srv)
		for id, tw := range o.twins {
			if strings.HasPrefix(id, "dev-") && !strings.Contains(tw, `"mode":"eco"`) {
				t.Errorf("%s/%s: twin %s after the re-run, want mode eco", name, id, tw)
			}
		}
	}
}

func TestFailedHubs(t *testing.T) {
	us := &hubset.HubError{Hub: "us", Err: errors.New("refused")}
	eu := &hubset.HubError{Hub: "eu", Err: errors.New("503")}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{errors.New("state"), nil},
		{fmt.Errorf("resolve wave main: %w", us), []string{"us"}},
		{fmt.Errorf("job x: %w", errors.Join(us, eu, us)), []string{"eu", "us"}},
	} {
		if got := failedHubs(tc.err); !slices.Equal(got, tc.want) {
			t.Errorf("failedHubs(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if got := hubList([]string{"eu", "jp", "us"}); got != "hubs eu, jp and us" {
		t.Errorf("hubList = %q", got)
	}
}

// applyUntilEvent runs apply with args in the background and returns once its JSON output holds
// event (within 30 s): its standard error and where its exit code arrives. what says what the event
// means, for a failure.
func applyUntilEvent(t *testing.T, args []string, env map[string]string, event, what string) (*syncBuffer, <-chan int) {
	t.Helper()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- mainEnv(args, nil, stdout, stderr, func(k string) string { return env[k] }) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), event) {
		select {
		case code := <-done:
			t.Fatalf("apply exited %d before %s:\n%s\n%s", code, what, stdout.String(), stderr.String())
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply never got to where %s:\n%s\n%s", what, stdout.String(), stderr.String())
		}
	}
	return stderr, done
}
