//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"
)

// TestCrashAtRandomMomentsSharedState is TestCrashAtRandomMoments with the state in a blob container
// on Azurite: SIGKILLed applies, no device invoked twice, no prior value lost, final twins as an
// uninterrupted run's. It runs 36 trials: a kill timed after a fast run ended lands on nothing, and
// at least 20 must land.
func TestCrashAtRandomMomentsSharedState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rollout and runs it dozens of times")
	}
	az := azuritetest.StartT(t)
	var n atomic.Int64
	be := crashBackend{
		name:  "blob",
		state: func(string) string { return az.URL(fmt.Sprintf("crash-%d/trials", n.Add(1))) },
		env:   []string{"AZURE_STORAGE_CONNECTION_STRING=" + az.ConnectionString()},
		afterKill: func(t *testing.T, state, rollout string) {
			m := machine{"AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString()}
			// A kill before the first lease leaves no rollout: nothing to unlock.
			code, out, errOut := m.run(t, "unlock", rollout, "--state", state, "--yes")
			if code != exitOK && !(code == exitInvalid && strings.Contains(errOut, "no rollout")) {
				t.Fatalf("unlock after a kill: exit %d\n%s%s", code, out, errOut)
			}
		},
	}
	crashTrials(t, buildRollout(t), be, 18)
}

// hostLossFleet is slow enough on S1 (10 device operations a second) that a batch's job runs for
// seconds: a kill lands while it runs.
const hostLossFleet = `
groups:
  - {name: a, count: 40, idPrefix: a-, tags: {ring: a}, behavior: {methodLatency: 1ms}}
`

const hostLossPlan = `
version: 1
name: host-loss
action:
  directMethod: {name: install, payload: {v: 2}, responseTimeout: 5s}
defaults:
  timeout: 5m
  batch: {size: 20, growth: 1}
  success: {minSuccessRate: 100%}
waves:
  - {name: all, target: "*"}
onFailure: halt
`

// TestHostLoss kills -9 the holder of a shared state while a batch's job runs, and starts apply
// again from another working directory: without unlock, it takes the rollout over within 65 s (the
// dead holder's lease lapses), re-attaches to the running job instead of creating another, and every
// device is invoked exactly once.
func TestHostLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a lease")
	}
	bin := buildRollout(t)
	az := azuritetest.StartT(t)
	dir := t.TempDir()
	fleet, err := emulator.ParseFleet("fleet.yaml", []byte(hostLossFleet))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := emulator.Start(context.Background(), emulator.Options{Fleet: fleet, TLS: true, CertDir: dir, Tier: "S1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(hostLossPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	state := az.URL("rollouts/host-loss")
	apply := func(cwd string, extra ...string) *exec.Cmd {
		args := append([]string{"apply", "--state", state, "--ca-file", srv.CAFile(), planFile}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Dir = cwd
		cmd.Env = append(os.Environ(), "IOTHUB_CONNECTION_STRING="+srv.ConnectionString(),
			"AZURE_STORAGE_CONNECTION_STRING="+az.ConnectionString())
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
	first := apply(t.TempDir())
	var firstOut syncBuffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once its first job runs on the hub.
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		jobs, err := hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, "", "", 100))
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 0 && !jobs[0].Terminal() {
			break
		}
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("the first apply never had a job running (jobs: %+v):\n%s", jobs, firstOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
	_ = first.Wait()
	killed := time.Now()

	second := apply(t.TempDir(), "--lock-timeout", "70s")
	var out bytes.Buffer
	second.Stdout, second.Stderr = &out, &out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	laptop := machine{"AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString()}
	var tookOver time.Duration
	for tookOver == 0 {
		_, status, _ := laptop.run(t, "status", "host-loss", "--state", state)
		if strings.Contains(status, fmt.Sprintf("pid %d ", second.Process.Pid)) || second.ProcessState != nil {
			tookOver = time.Since(killed)
		}
		if time.Since(killed) > 90*time.Second {
			_ = second.Process.Kill()
			t.Fatalf("the second apply did not take the rollout over within 90 s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("the second apply: %v\n%s", err, out.String())
	}
	t.Logf("the second apply took the rollout over %s after the kill", tookOver.Round(100*time.Millisecond))
	if tookOver > 65*time.Second {
		t.Errorf("take-over after %s, want within 65 s", tookOver)
	}
	jobs, err := hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, "", "", 100))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Errorf("the hub ran %d jobs for 2 batches: the running one was not re-attached", len(jobs))
	}
	for id, d := range srv.Stats().Device {
		if d.MethodInvocations != 1 {
			t.Errorf("%s invoked %d times", id, d.MethodInvocations)
		}
	}
	if n := len(srv.Stats().Device); n != 40 {
		t.Errorf("%d devices invoked, want 40", n)
	}
}

const outageFleet = `
groups:
  - {name: a, count: 60, idPrefix: a-, tags: {ring: a}}
`

// Twelve batches of 5 on S1, a second apart or more: the rollout is still running when the storage
// service goes away.
const outagePlan = `
version: 1
name: outage
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  timeout: 5m
  batch: {size: 5, growth: 1}
  success: {minSuccessRate: 100%}
waves:
  - {name: a, target: "*"}
onFailure: halt
`

// TestStorageOutage stops Azurite for 20 s in the middle of a rollout and brings it back with its
// data: apply rides it out with bounded retries, or exits 4 saying the state could not be reached,
// and the next run continues; either way every device is updated once, by one job per batch.
func TestStorageOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out an outage")
	}
	az := azuritetest.StartT(t)
	dir := t.TempDir()
	srv := startTLSEmulator(t, dir, outageFleet, emulator.Options{Tier: "S1"})
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(outagePlan), 0o600); err != nil {
		t.Fatal(err)
	}
	state := az.URL("rollouts/outage")
	runner := machine{"IOTHUB_CONNECTION_STRING": srv.ConnectionString(), "AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString(),
		"test-ca-file": srv.CAFile()}
	done := runner.applyInBackground(t, "--state", state, planFile)
	untilOutput(t, machine{"AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString()}, "batch 2/", "status", "outage", "--state", state)
	az.Shutdown()
	time.Sleep(20 * time.Second)
	back, err := azuritetest.Start(az.Addr, az.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Stop)
	r := <-done
	t.Logf("apply across the outage: exit %d\n%s", r.code, lastLines(r.stderr, 3))
	switch r.code {
	case exitOK:
	case exitHub:
		if !strings.Contains(r.stderr, "state "+state) {
			t.Errorf("exit 4 without saying the state could not be reached:\n%s", r.stderr)
		}
		if code, _, errOut := runner.apply(t, "--state", state, "--lock-timeout", "70s", planFile); code != exitOK {
			t.Fatalf("the run after the outage: exit %d\n%s", code, errOut)
		}
	default:
		t.Fatalf("apply across the outage: exit %d\n%s", r.code, r.stderr)
	}
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jobs, err := hubapi.Collect[hubapi.JobResponse](ctx, c.ListJobs(ctx, "", "", 100))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 12 {
		t.Errorf("%d jobs for 12 batches", len(jobs))
	}
	twins, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices WHERE properties.desired.fw = '2'", 100))
	if err != nil || len(twins) != 60 {
		t.Errorf("%d of 60 devices updated (%v)", len(twins), err)
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
