package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

// TestApplyPacesToTheTierTheHubStates points apply by connection string at an emulator of tier
// S3 × 10 without --tier: it must pace to S3 × 10 (500 job device operations a second, 10 jobs at once)
// as the emulator states it, not assume S1. 2,000 devices over four waves take a few seconds at the
// emulator's pace and over three minutes at S1's 10 a second, so the bound below tells them apart
// with a wide margin on a loaded machine.
func TestApplyPacesToTheTierTheHubStates(t *testing.T) {
	dir := t.TempDir()
	srv := startTLSEmulator(t, dir, `
groups:
  - {name: canary, count: 20, idPrefix: canary-, tags: {ring: canary}}
  - {name: fleet, count: 1980, idPrefix: dev-, tags: {ring: main}}
`, emulator.Options{Tier: "S3", Units: 10})
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(`
version: 1
name: paced
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  batch: {size: 200, growth: 2}
  success: {minSuccessRate: 100%}
waves:
  - {name: canary, target: "tags.ring = 'canary'"}
  - {name: one, target: "*", percent: 25}
  - {name: two, target: "*", percent: 50}
  - {name: rest, target: "*"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := map[string]string{"IOTHUB_CONNECTION_STRING": srv.ConnectionString()}
	start := time.Now()
	code := mainEnv([]string{"apply", "--state", filepath.Join(dir, "state"), "--ca-file", srv.CAFile(), planFile},
		nil, &stdout, &stderr, func(k string) string { return e[k] })
	took := time.Since(start)
	if code != exitOK {
		t.Fatalf("apply exited %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "pacing to tier S1") {
		t.Errorf("apply assumed S1 against a hub that states S3 × 10:\n%s", stderr.String())
	}
	if took > 60*time.Second {
		t.Errorf("apply of 2,000 devices on S3 × 10 took %s; at the emulator's pace it takes seconds", took)
	}
	t.Logf("2,000 devices, 4 waves, S3 × 10 without --tier: %s", took)
}

// TestApplyNamesTheCAFlagForAnUnknownCA points apply at the emulator's HTTPS listener without its CA:
// the first contact fails at once (exit 4) naming --ca-file and SSL_CERT_FILE, and no state is made.
func TestApplyNamesTheCAFlagForAnUnknownCA(t *testing.T) {
	dir := t.TempDir()
	srv := startTLSEmulator(t, dir, "groups:\n  - {name: a, count: 2, idPrefix: a-}\n", emulator.Options{})
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte("version: 1\nname: ca\naction:\n  twinUpdate: {desired: {fw: \"2\"}}\nwaves:\n  - {name: all, target: \"*\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	env := map[string]string{"IOTHUB_CONNECTION_STRING": srv.ConnectionString()}
	state := filepath.Join(dir, "state")
	start := time.Now()
	code := mainEnv([]string{"apply", "--state", state, planFile}, nil, &stdout, &stderr, func(k string) string { return env[k] })
	if code != exitHub {
		t.Fatalf("apply exited %d, want %d\n%s", code, exitHub, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "--ca-file") || !strings.Contains(msg, "SSL_CERT_FILE") {
		t.Errorf("the error does not say how to trust the hub's CA:\n%s", msg)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("an unknown CA took %s to report; it is not worth retrying", took)
	}
	if _, err := os.Stat(filepath.Join(state, "ca.db")); err == nil {
		t.Error("a rollout that never reached its hub has state")
	}
}

// startTLSEmulator serves the fleet fleetYAML over HTTPS with its CA under dir, with opts' other
// settings, until the test ends.
func startTLSEmulator(t *testing.T, dir, fleetYAML string, opts emulator.Options) *emulator.Server {
	t.Helper()
	fleet, err := emulator.ParseFleet("fleet.yaml", []byte(fleetYAML))
	if err != nil {
		t.Fatal(err)
	}
	opts.Fleet, opts.TLS, opts.CertDir = fleet, true, dir
	srv, err := emulator.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}
