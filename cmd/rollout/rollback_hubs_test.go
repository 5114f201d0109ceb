package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
)

const rollbackHubsFleet = `
groups:
  - {name: a, count: 4, idPrefix: a-, tags: {ring: a}, desired: {fw: "1"}, behavior: {converge: {delay: 5ms}}}
  - {name: b, count: 3, idPrefix: b-, tags: {ring: b}, behavior: {converge: {failure: 100%}}}
`

// Wave a passes on both hubs; wave b never converges, and the rollout halts with a applied.
const rollbackHubsPlan = `
version: 1
name: hubs-undo
hubs:
  eu: {connection: env:IOTHUB_EU}
  us: {connection: env:IOTHUB_US}
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 100%}
  verify: {condition: "properties.reported.fw = '2'", minRate: 100%, within: 1s}
waves:
  - {name: a, target: "tags.ring = 'a'"}
  - {name: b, target: "*"}
onFailure: halt
`

// TestRollbackOfAPlanWithHubs: `rollout rollback NAME` has no plan, yet reaches both hubs from the
// references the state keeps (never the connection strings) and restores the twins on both.
func TestRollbackOfAPlanWithHubs(t *testing.T) {
	dir := t.TempDir()
	srvs, envList := startHubs(t, dir, map[string]string{"eu": rollbackHubsFleet, "us": rollbackHubsFleet})
	env := map[string]string{}
	for _, kv := range envList {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	planFile := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(rollbackHubsPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	run := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		flags := []string{"--state", state}
		if args[0] == "apply" || args[0] == "rollback" {
			flags = append(flags, "--ca-file", filepath.Join(dir, "ca.pem"))
		}
		args = append(args[:1], append(flags, args[1:]...)...)
		code := mainEnv(args, nil, &stdout, &stderr, func(k string) string { return env[k] })
		return code, stdout.String() + stderr.String()
	}
	if code, out := run("apply", planFile); code != exitHalted {
		t.Fatalf("apply exited %d, want %d (halted)\n%s", code, exitHalted, out)
	}
	fw := func(name, id string) any {
		t.Helper()
		srv := srvs[name]
		c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
		if err != nil {
			t.Fatal(err)
		}
		tw, err := c.GetTwin(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return tw.Properties.Desired["fw"]
	}
	for _, hub := range []string{"eu", "us"} {
		if got := fw(hub, "a-0000"); got != "2" {
			t.Fatalf("hub %s: a-0000 desired fw %v after apply, want 2", hub, got)
		}
	}
	checkStateSecretFree(t, state, env)

	// status and the report sum the devices per hub.
	if code, out := run("status", "hubs-undo"); code != exitOK ||
		!regexp.MustCompile(`(?m)^  hub eu +7 devices: 7 succeeded, 0 failed, 0 pending$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  hub us +7 devices: 7 succeeded, 0 failed, 0 pending$`).MatchString(out) {
		t.Errorf("status exited %d, without a line per hub:\n%s", code, out)
	}
	if code, out := run("status", "hubs-undo", "--output", "json"); code != exitOK ||
		!strings.Contains(out, `"hubs": [`) || !strings.Contains(out, `"hub": "us",`) || !strings.Contains(out, `"name": "hubs-undo"`) {
		t.Errorf("status --output json exited %d, without the state and its per-hub sums:\n%s", code, out)
	}
	reportFile := filepath.Join(dir, "report.json")
	if code, out := run("report", "hubs-undo", "--out", reportFile); code != exitOK {
		t.Fatalf("report exited %d\n%s", code, out)
	}
	var rep engine.Report
	if b, err := os.ReadFile(reportFile); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report: %v", err)
	}
	want := []engine.HubSummary{{Hub: "eu", Devices: 7, Succeeded: 7}, {Hub: "us", Devices: 7, Succeeded: 7}}
	if !reflect.DeepEqual(rep.Hubs, want) {
		t.Errorf("report hubs %+v, want %+v", rep.Hubs, want)
	}

	env = map[string]string{"IOTHUB_EU": env["IOTHUB_EU"], "IOTHUB_US": env["IOTHUB_US"]}
	if code, out := run("rollback", "hubs-undo"); code != exitOK {
		t.Fatalf("rollback exited %d\n%s", code, out)
	}
	for _, hub := range []string{"eu", "us"} {
		for _, id := range []string{"a-0000", "a-0003"} {
			if got := fw(hub, id); got != "1" {
				t.Errorf("hub %s: %s desired fw %v after rollback, want 1", hub, id, got)
			}
		}
		if got := fw(hub, "b-0000"); got != nil {
			t.Errorf("hub %s: b-0000 desired fw %v after rollback, want none", hub, got)
		}
	}

	if code, out := run("status", "hubs-undo"); code != exitOK ||
		!regexp.MustCompile(`(?m)^  hub eu +7 devices: .*, 7 rolled back$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  hub us +7 devices: .*, 7 rolled back$`).MatchString(out) {
		t.Errorf("status after the rollback exited %d, without each hub's devices rolled back:\n%s", code, out)
	}

	// Without a hub's variable the rollback names it, and not a value.
	delete(env, "IOTHUB_US")
	code, out := run("rollback", "hubs-undo")
	if code != exitHub || !strings.Contains(out, "IOTHUB_US is not set") {
		t.Errorf("rollback without IOTHUB_US: exit %d\n%s", code, out)
	}
}

// checkStateSecretFree fails the test when a file under dir holds a connection string's key, or
// when no file there names the hubs' connection variables (the references rollback reaches them by).
func checkStateSecretFree(t *testing.T, dir string, env map[string]string) {
	t.Helper()
	named := false
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		named = named || bytes.Contains(b, []byte(`"connection":"IOTHUB_US"`))
		for _, cs := range env {
			if _, key, ok := strings.Cut(cs, "SharedAccessKey="); ok && bytes.Contains(b, []byte(key)) {
				t.Errorf("%s holds a hub's key", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !named {
		t.Errorf("no file under %s names the connection variable IOTHUB_US", dir)
	}
}
