//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"
)

const sharedFleet = `
groups:
  - {name: canary, count: 3, idPrefix: canary-, tags: {ring: canary}}
  - {name: main, count: 6, idPrefix: main-, tags: {ring: main}}
`

// The second wave waits for an approval; a bake gives a lease-breaking test a wait to stop in.
const sharedPlan = `
version: 1
name: shared
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 100%}
waves:
  - {name: canary, target: "tags.ring = 'canary'", bake: %BAKE%}
  - {name: main, target: "*", approval: required}
`

// machine runs rollout commands in-process with an environment of their own, as one machine would.
type machine map[string]string

// ran is how a command run in the background ended.
type ran struct {
	code   int
	stderr string
}

// applyInBackground runs apply on the machine; its end arrives on the channel.
func (m machine) applyInBackground(t *testing.T, args ...string) <-chan ran {
	done := make(chan ran, 1)
	go func() {
		code, _, errOut := m.apply(t, args...)
		done <- ran{code, errOut}
	}()
	return done
}

// apply runs apply on the machine's hub (the hub's CA is the machine's test-ca-file).
func (m machine) apply(t *testing.T, args ...string) (int, string, string) {
	return m.run(t, append([]string{"apply", "--ca-file", m["test-ca-file"]}, args...)...)
}

func (m machine) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := mainEnv(args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return m[k] })
	return code, stdout.String(), stderr.String()
}

// sharedSetup serves a fleet and a blob container and writes the plan: it returns the plan file,
// the state URL and the two machines, a runner with the hub's connection string and a laptop with
// only the storage one.
func sharedSetup(t *testing.T, bake string) (planFile, url string, runner, laptop machine, hub *hubapi.Client) {
	dir := t.TempDir()
	srv := startTLSEmulator(t, dir, sharedFleet, emulator.Options{})
	az := azuritetest.StartT(t)
	url = az.URL("rollouts/team-a")
	planFile = filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(planFile, []byte(strings.ReplaceAll(sharedPlan, "%BAKE%", bake)), 0o600); err != nil {
		t.Fatal(err)
	}
	runner = machine{"IOTHUB_CONNECTION_STRING": srv.ConnectionString(), "AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString(),
		"test-ca-file": srv.CAFile()}
	laptop = machine{"AZURE_STORAGE_CONNECTION_STRING": az.ConnectionString(), "GITHUB_ACTOR": "ana"}
	hub, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{CAFile: srv.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	return planFile, url, runner, laptop, hub
}

// untilOutput runs a command until its standard output holds want, for up to 30 s.
func untilOutput(t *testing.T, m machine, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, out, errOut := m.run(t, args...)
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v never printed %q:\n%s%s", args, want, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSharedStateFromAnotherMachine runs apply on one machine with its state in a blob container
// and, while it holds the lease, reads status and approves from another; the apply continues, and
// the rollout moves to a directory and back.
func TestSharedStateFromAnotherMachine(t *testing.T) {
	planFile, url, runner, laptop, _ := sharedSetup(t, "0s")
	done := runner.applyInBackground(t, "--tier", "unlimited", "--state", url, planFile)
	out := untilOutput(t, laptop, "waits for approval", "status", "shared", "--state", url)
	if !strings.Contains(out, "pid") {
		t.Errorf("status from another machine does not name the lease's holder:\n%s", out)
	}
	if code, out, errOut := laptop.run(t, "approve", "shared", "--wave", "main", "--state", url); code != exitOK {
		t.Fatalf("approve while apply holds the lease: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case r := <-done:
		if r.code != exitOK {
			t.Fatalf("apply exited %d after the approval:\n%s", r.code, r.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("apply did not continue after the approval from another machine")
	}
	out = untilOutput(t, laptop, "done", "status", "shared", "--state", url)
	if !strings.Contains(out, "ana") {
		t.Errorf("status does not say who approved:\n%s", out)
	}

	reportFile := filepath.Join(t.TempDir(), "report.json")
	if code, _, errOut := laptop.run(t, "report", "shared", "--state", url, "--out", reportFile); code != exitOK {
		t.Fatalf("report from another machine: exit %d\n%s", code, errOut)
	}
	var rep engine.Report
	if data, err := os.ReadFile(reportFile); err != nil || json.Unmarshal(data, &rep) != nil {
		t.Fatalf("report: %v", err)
	}
	if a := rep.Approvals["main"]; a.By != "ana" || a.Host == "" || a.PlanHash == "" || a.At.IsZero() {
		t.Errorf("the report's approval of wave main: %+v", a)
	}
	checkBlobsPrivateAndSecretFree(t, laptop["AZURE_STORAGE_CONNECTION_STRING"], url, runner["IOTHUB_CONNECTION_STRING"])

	// To a directory and back to another prefix of the container.
	dir := filepath.Join(t.TempDir(), "local")
	if code, _, errOut := laptop.run(t, "state", "pull", "shared", "--from", url, "--state", dir); code != exitOK {
		t.Fatalf("state pull: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := laptop.run(t, "state", "pull", "shared", "--from", url, "--state", dir); code != exitInvalid || !strings.Contains(errOut, "already") {
		t.Errorf("a second pull over the copy: exit %d\n%s", code, errOut)
	}
	local := untilOutput(t, laptop, "done", "status", "shared", "--state", dir)
	if !strings.Contains(local, "ana") {
		t.Errorf("the pulled state lost the approval:\n%s", local)
	}
	other := strings.Replace(url, "team-a", "team-b", 1)
	if code, _, errOut := laptop.run(t, "state", "push", "shared", "--state", dir, "--to", other); code != exitOK {
		t.Fatalf("state push: exit %d\n%s", code, errOut)
	}
	if code, out, _ := laptop.run(t, "status", "--state", other); code != exitOK || !strings.Contains(out, "shared") {
		t.Errorf("status of the pushed container: exit %d\n%s", code, out)
	}
	if code, out, _ := laptop.run(t, "unlock", "shared", "--state", other); code != exitOK || !strings.Contains(out, "not locked") {
		t.Errorf("unlock of a rollout nobody holds: exit %d\n%s", code, out)
	}
}

// TestUnlockFencesALiveHolder breaks the lease of an apply that is baking its first wave, with the
// next wave approved in advance: unfenced, it would start that wave when the bake ends. It stops with
// exit 4 instead, and creates no job after the break: the hub's job list is what it was.
func TestUnlockFencesALiveHolder(t *testing.T) {
	planFile, url, runner, laptop, hub := sharedSetup(t, "6s")
	done := runner.applyInBackground(t, "--tier", "unlimited", "--state", url, planFile)
	untilOutput(t, laptop, "baking", "status", "shared", "--state", url)
	if code, _, errOut := laptop.run(t, "approve", "shared", "--wave", "main", "--state", url); code != exitOK {
		t.Fatalf("approve in advance: exit %d\n%s", code, errOut)
	}
	ctx := context.Background()
	before, err := hubapi.Collect[hubapi.JobResponse](ctx, hub.ListJobs(ctx, "", "", 100))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := laptop.run(t, "unlock", "shared", "--state", url, "--yes")
	if code != exitOK || !strings.Contains(out, "lease: leased") {
		t.Fatalf("unlock --yes: exit %d\n%s%s", code, out, errOut)
	}
	broke := time.Now()
	select {
	case r := <-done:
		if r.code != exitHub || !strings.Contains(r.stderr, "lock was lost") {
			t.Errorf("the fenced apply exited %d:\n%s", r.code, r.stderr)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the fenced apply did not stop within 40 s of the break")
	}
	t.Logf("the fenced apply stopped %s after the break", time.Since(broke).Round(time.Millisecond))
	after, err := hubapi.Collect[hubapi.JobResponse](ctx, hub.ListJobs(ctx, "", "", 100))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the hub has %d jobs after the break, %d before it", len(after), len(before))
	}
	main, err := hubapi.Collect[hubapi.Twin](ctx, hub.Query(ctx, "SELECT * FROM devices WHERE tags.ring = 'main'", 100))
	if err != nil || len(main) != 6 {
		t.Fatalf("the main ring: %d twins, %v", len(main), err)
	}
	for _, tw := range main {
		if _, ok := tw.Properties.Desired["fw"]; ok {
			t.Errorf("%s was changed after the break", tw.DeviceID)
		}
	}
	// The next run takes the lease and continues: the bake is over and the next wave approved.
	code, _, errOut = runner.apply(t, "--tier", "unlimited", "--state", url, "--no-wait", planFile)
	if code != exitOK {
		t.Errorf("the next run: exit %d\n%s", code, errOut)
	}
}

// checkBlobsPrivateAndSecretFree reads every blob of the container that url names: none holds the
// storage key or the hub's key, and the container admits no anonymous reader.
func checkBlobsPrivateAndSecretFree(t *testing.T, storageConn, url, hubConn string) {
	t.Helper()
	ctx := context.Background()
	rest := strings.TrimPrefix(url, "http://")
	parts := strings.Split(rest, "/") // HOST, ACCOUNT, CONTAINER, PREFIX...
	c, err := container.NewClientFromConnectionString(storageConn, parts[2], nil)
	if err != nil {
		t.Fatal(err)
	}
	props, err := c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if props.BlobPublicAccess != nil {
		t.Errorf("the container admits anonymous reads: %v", *props.BlobPublicAccess)
	}
	secrets := []string{secretOf(storageConn, "AccountKey"), secretOf(hubConn, "SharedAccessKey")}
	n := 0
	pager := c.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Segment.BlobItems {
			resp, err := c.NewBlobClient(*it.Name).DownloadStream(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			n++
			for _, sec := range secrets {
				if sec != "" && bytes.Contains(data, []byte(sec)) {
					t.Errorf("blob %s holds a secret", *it.Name)
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("only %d blobs in the container", n)
	}
}

// secretOf is the value of key in a connection string.
func secretOf(conn, key string) string {
	for _, part := range strings.Split(conn, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && k == key {
			return v
		}
	}
	return ""
}
