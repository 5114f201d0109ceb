package hubset_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubset"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

// fleetOf is a fleet of n canary and m other devices of region, the others converging unless fail.
func fleetOf(region string, canaries, others int, failOthers bool) string {
	conv := "{delay: 10ms}"
	if failOthers {
		conv = "{failure: 100%}"
	}
	return `
groups:
  - name: canary
    count: ` + itoa(canaries) + `
    idPrefix: ` + region + `-canary-
    tags: {ring: canary, region: ` + region + `}
    desired: {firmware: {version: "1.0"}}
    behavior: {converge: {delay: 10ms}}
  - name: rest
    count: ` + itoa(others) + `
    idPrefix: ` + region + `-dev-
    tags: {ring: main, region: ` + region + `}
    behavior: {converge: ` + conv + `}
`
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

const hubsPlan = `
version: 1
name: two-hubs
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}, tags: {fw: two}}
hubs:
  eu: {connection: env:EU}
  us: {connection: env:US}
defaults:
  batch: {size: 4, growth: 2}
  success: {minSuccessRate: 100%, minDevices: 1}
  verify: {condition: "properties.reported.firmware.version = '2.0'", within: 400ms}
waves:
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'"}
  - {name: world}
`

// hubs starts one emulator per fleet and returns the Set over them, its combined quotas and each
// hub's own client.
func hubs(t *testing.T, fleets map[string]string) (*hubset.Set, hubapi.Quotas, map[string]*hubapi.Client) {
	t.Helper()
	members := map[string]engine.Hub{}
	clients := map[string]*hubapi.Client{}
	var qs []hubapi.Quotas
	for name, fleet := range fleets {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{})
		members[name], clients[name] = c, c
		qs = append(qs, srv.Quotas())
	}
	return hubset.New(members), hubset.Quotas(qs), clients
}

func apply(t *testing.T, hub engine.Hub, q hubapi.Quotas, p *plan.Plan, dir string) (*engine.Result, *engine.State) {
	t.Helper()
	store, err := engine.OpenStore(context.Background(), bolt.New(dir), p.Name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := engine.Apply(ctx, p, engine.Options{Hub: hub, Store: store, Quotas: q, VerifyPoll: 30 * time.Millisecond})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	return res, st
}

// twins reads every twin of a hub exactly: tags and desired properties, by device id.
func twins(t *testing.T, c *hubapi.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT deviceId FROM devices", 100))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		tw, err := c.GetTwin(ctx, r.DeviceID)
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
		out[tw.DeviceID] = string(b)
	}
	return out
}

// jobRecords counts, per device of a hub, the job records of every job the rollout made there.
func jobRecords(t *testing.T, c *hubapi.Client, prefix string) map[string]int {
	t.Helper()
	ctx := context.Background()
	rows, err := hubapi.Collect[hubapi.DeviceJob](ctx, c.Query(ctx, "SELECT * FROM devices.jobs", 100))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		if strings.HasPrefix(r.JobID, prefix) && strings.Contains(r.JobID, "-w") {
			out[r.DeviceID]++
		}
	}
	return out
}

// TestWaveSpanningHubs runs a canary on one hub and a wave over both: every device of both hubs gets
// the change once, the state names each device by its hub, and each batch's job has the same id on
// both hubs.
func TestWaveSpanningHubs(t *testing.T) {
	set, q, clients := hubs(t, map[string]string{"eu": fleetOf("eu", 3, 9, false), "us": fleetOf("us", 2, 11, false)})
	p := enginetest.Plan(t, hubsPlan)
	res, st := apply(t, set, q, p, t.TempDir())
	if res.Status != engine.StatusDone {
		t.Fatalf("status %s (%s), want done", res.Status, res.Reason)
	}
	if st.Waves[0].DeviceCount != 3 || st.Waves[1].DeviceCount != 9+13 {
		t.Errorf("waves took %d and %d devices, want 3 (eu canaries) and 22", st.Waves[0].DeviceCount, st.Waves[1].DeviceCount)
	}
	for name, c := range clients {
		for id, tw := range twins(t, c) {
			if !strings.Contains(tw, `"2.0"`) || !strings.Contains(tw, `"fw":"two"`) {
				t.Errorf("%s/%s was not updated: %s", name, id, tw)
			}
		}
		for id, n := range jobRecords(t, c, p.Name) {
			if n != 1 {
				t.Errorf("%s/%s is in %d of the rollout's jobs, want 1", name, id, n)
			}
		}
	}
	// The world wave's second batch has devices of both hubs: its job exists on both, by one id.
	job := plan.JobID(p, 1, 1, 0) // world batch 1: 5 eu devices and 3 us devices
	for name, c := range clients {
		if _, err := c.GetJob(context.Background(), job); err != nil {
			t.Errorf("hub %s has no part of job %s: %v", name, job, err)
		}
	}
	resp, err := set.GetJob(context.Background(), job)
	if err != nil || resp.DeviceJobStatistics.DeviceCount != 8 || resp.Status != hubapi.JobCompleted {
		t.Errorf("GetJob over the hubs = %+v, %v; want completed with 8 devices", resp, err)
	}
}

// TestFailureOnOneHubRollsBackBoth fails the wave's verify on one hub's devices only: the rollout
// rolls back every batch on both hubs, and every twin of both is exactly as before.
func TestFailureOnOneHubRollsBackBoth(t *testing.T) {
	set, q, clients := hubs(t, map[string]string{"eu": fleetOf("eu", 3, 6, false), "us": fleetOf("us", 0, 5, true)})
	before := map[string]map[string]string{}
	for name, c := range clients {
		before[name] = twins(t, c)
	}
	p := enginetest.Plan(t, hubsPlan)
	res, st := apply(t, set, q, p, t.TempDir())
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s (%s), want rolledBack", res.Status, res.Reason)
	}
	if st.Rollback == nil || !st.Rollback.Done || st.Rollback.Devices != 3+6+5 {
		t.Errorf("rollback %+v, want done over 14 devices of both hubs", st.Rollback)
	}
	for name, c := range clients {
		if after := twins(t, c); !reflect.DeepEqual(before[name], after) {
			for id := range before[name] {
				if before[name][id] != after[id] {
					t.Errorf("hub %s, %s: before %s, after %s", name, id, before[name][id], after[id])
				}
			}
		}
	}
}

// TestCanaryOnOneHubGatesAnother fails the canary on eu: the wave over us never starts, and no us
// device is touched.
func TestCanaryOnOneHubGatesAnother(t *testing.T) {
	eu := strings.Replace(fleetOf("eu", 3, 2, false), "converge: {delay: 10ms}", "converge: {failure: 100%}", 1)
	set, q, clients := hubs(t, map[string]string{"eu": eu, "us": fleetOf("us", 0, 6, false)})
	usBefore := twins(t, clients["us"])
	p := enginetest.Plan(t, hubsPlan)
	res, st := apply(t, set, q, p, t.TempDir())
	if res.Status != engine.StatusRolledBack || !strings.Contains(res.Reason, "verify") {
		t.Fatalf("status %s (%s), want rolledBack by verify", res.Status, res.Reason)
	}
	if st.Waves[1].Status != engine.StatusPending {
		t.Errorf("wave world is %s; a failed canary must gate it", st.Waves[1].Status)
	}
	if got := twins(t, clients["us"]); !reflect.DeepEqual(got, usBefore) {
		t.Error("us twins changed though the canary on eu failed")
	}
	if n := len(jobRecords(t, clients["us"], p.Name)); n != 0 {
		t.Errorf("%d us devices are in the rollout's jobs, want 0", n)
	}
}

// TestPartedJobAfterCrash creates a job's part on one hub only, as a run killed between the parts
// leaves it: creating the job again makes the missing part and leaves the existing one alone, and a
// create with every part existing answers AlreadyExists.
func TestPartedJobAfterCrash(t *testing.T) {
	set, _, clients := hubs(t, map[string]string{"eu": fleetOf("eu", 0, 2, false), "us": fleetOf("us", 0, 2, false)})
	ctx := context.Background()
	req := func(cond string) *hubapi.JobRequest {
		return &hubapi.JobRequest{JobID: "crash-1", Type: hubapi.JobTypeUpdateTwin, QueryCondition: cond,
			UpdateTwin: &hubapi.Twin{ETag: "*", Tags: map[string]any{"x": 1}}, MaxExecutionTimeInSeconds: 60}
	}
	if _, err := clients["eu"].CreateJob(ctx, req(engine.InCondition([]string{"eu-dev-0000", "eu-dev-0001"}))); err != nil {
		t.Fatal(err)
	}
	all := engine.InCondition([]string{"eu/eu-dev-0000", "eu/eu-dev-0001", "us/us-dev-0000", "us/us-dev-0001"})
	if _, err := set.CreateJob(ctx, req(all)); err != nil {
		t.Fatalf("re-create with one part missing: %v", err)
	}
	if _, err := clients["us"].GetJob(ctx, "crash-1"); err != nil {
		t.Errorf("the missing part was not created: %v", err)
	}
	if _, err := set.CreateJob(ctx, req(all)); !hubapi.IsAlreadyExists(err) {
		t.Errorf("create with every part existing: %v, want AlreadyExists", err)
	}
	if _, err := set.GetJob(ctx, "no-such-job"); !hubapi.IsNotFound(err) {
		t.Errorf("GetJob of an unknown job: %v, want NotFound", err)
	}
}

// TestQueryRouting checks the routing of queries: qualified ids go to their hub only, counts are
// summed, other queries run on every hub of the view.
func TestQueryRouting(t *testing.T) {
	set, _, _ := hubs(t, map[string]string{"eu": fleetOf("eu", 2, 3, false), "us": fleetOf("us", 1, 4, false)})
	ctx := context.Background()
	ids := func(h engine.Hub, q string) []string {
		t.Helper()
		rows, err := hubapi.Collect[hubapi.Twin](ctx, h.Query(ctx, q, 3))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var out []string
		for _, r := range rows {
			out = append(out, r.DeviceID)
		}
		sort.Strings(out)
		return out
	}
	if got := ids(set, "SELECT deviceId FROM devices WHERE tags.ring = 'canary'"); !reflect.DeepEqual(got, []string{"eu/eu-canary-0000", "eu/eu-canary-0001", "us/us-canary-0000"}) {
		t.Errorf("canaries = %v", got)
	}
	if got := ids(set.For([]string{"us"}), "SELECT deviceId FROM devices WHERE tags.ring = 'canary'"); !reflect.DeepEqual(got, []string{"us/us-canary-0000"}) {
		t.Errorf("canaries on us = %v", got)
	}
	in := "SELECT * FROM devices WHERE tags.ring = 'main' AND " + engine.InCondition([]string{"eu/eu-dev-0001", "us/us-dev-0003", "us/us-canary-0000"})
	if got := ids(set, in); !reflect.DeepEqual(got, []string{"eu/eu-dev-0001", "us/us-dev-0003"}) {
		t.Errorf("by id = %v", got)
	}
	rows, err := hubapi.Collect[struct{ N int }](ctx, set.Query(ctx, "SELECT COUNT() AS n FROM devices WHERE tags.ring = 'main'", 100))
	if err != nil || len(rows) != 1 || rows[0].N != 7 {
		t.Errorf("count = %+v, %v; want one row of 7", rows, err)
	}
	tw, err := set.GetTwin(ctx, "us/us-dev-0002")
	if err != nil || tw.DeviceID != "us/us-dev-0002" {
		t.Errorf("GetTwin = %+v, %v", tw, err)
	}
	if _, err := set.GetTwin(ctx, "asia/x"); err == nil || !strings.Contains(err.Error(), "asia") {
		t.Errorf("GetTwin on an unknown hub: %v", err)
	}
}
