package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/hubapi"
)

const previewHubsEU = `
groups:
  - {name: canary, count: 4, idPrefix: canary-, tags: {ring: canary}, desired: {fw: "1"}}
  - {name: main, count: 10, idPrefix: dev-, tags: {ring: main}}
`

// us has canary-tagged devices too: the canary runs on eu only, so wave world takes them.
const previewHubsUS = `
groups:
  - {name: canary, count: 6, idPrefix: canary-, tags: {ring: canary}, desired: {fw: "1"}}
  - {name: main, count: 200, idPrefix: dev-, tags: {ring: main}}
configurations:
  - id: us-fw
    priority: 5
    targetCondition: "tags.ring = 'main'"
    content: {deviceContent: {properties.desired.fw: "0"}}
`

const previewHubsPlan = `
version: 1
name: preview-hubs
hubs:
  eu: {connection: env:EU, tier: S3}
  us: {connection: env:US}
action:
  twinUpdate: {desired: {fw: "2"}}
defaults:
  success: {minSuccessRate: 99%}
waves:
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'"}
  - {name: world}
`

// TestPreviewPerHub previews a plan with hubs on two emulators: each hub's part counts the waves
// that run on it with its own condition and estimates at its own tier, and the total adds the parts
// up, a wave's estimate being its longest part's.
func TestPreviewPerHub(t *testing.T) {
	p := enginetest.Plan(t, previewHubsPlan)
	targets := map[string]engine.HubTarget{}
	for name, fleet := range map[string]string{"eu": previewHubsEU, "us": previewHubsUS} {
		srv, c := enginetest.Hub(t, fleet, emulator.Options{})
		tier := "S1" // us: the plan gives no tier, so the estimate's default
		if name == "eu" {
			tier = "S3"
		}
		est, err := hubapi.TierQuotas(tier, 1)
		if err != nil {
			t.Fatal(err)
		}
		targets[name] = engine.HubTarget{Hub: c, Quotas: srv.Quotas(), Estimate: est}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pv, err := engine.PreviewPlan(ctx, p, engine.PreviewOptions{Hub: targets["eu"].Hub, Hubs: targets})
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Hubs) != 2 || pv.Hubs[0].Hub != "eu" || pv.Hubs[1].Hub != "us" {
		t.Fatalf("hubs %+v, want eu and us", pv.Hubs)
	}
	eu, us := pv.Hubs[0], pv.Hubs[1]
	devices := func(ws []engine.WavePreview) map[string]int {
		m := map[string]int{}
		for _, w := range ws {
			m[w.Name] = w.Devices
		}
		return m
	}
	if got := devices(eu.Waves); got["canary"] != 4 || got["world"] != 10 || len(got) != 2 {
		t.Errorf("hub eu waves %v, want canary 4, world 10", got)
	}
	if got := devices(us.Waves); got["world"] != 206 || len(got) != 1 {
		t.Errorf("hub us waves %v, want world 206 (its canary-tagged devices too)", got)
	}
	if got := devices(pv.Waves); got["canary"] != 4 || got["world"] != 216 {
		t.Errorf("total waves %v, want canary 4, world 216", got)
	}
	if pv.FleetDevices != 220 || pv.Untargeted != 0 || eu.Tier != "S3" || us.Tier != "S1" {
		t.Errorf("fleet %d, untargeted %d, tiers %s/%s; want 220, 0, S3/S1", pv.FleetDevices, pv.Untargeted, eu.Tier, us.Tier)
	}
	world, usWorld, euWorld := pv.Waves[1], us.Waves[0], eu.Waves[1]
	if usWorld.Estimate.Jobs <= euWorld.Estimate.Jobs || world.Estimate.Total != usWorld.Estimate.Total {
		t.Errorf("world estimate %s, parts eu %s (jobs %s), us %s (jobs %s): want the us part's, the longer",
			world.Estimate.Total, euWorld.Estimate.Total, euWorld.Estimate.Jobs, usWorld.Estimate.Total, usWorld.Estimate.Jobs)
	}
	if pv.Estimate.Total != pv.Waves[0].Estimate.Total+world.Estimate.Total {
		t.Errorf("rollout estimate %s, want the sum of its waves'", pv.Estimate.Total)
	}
	if len(world.Diff) != 1 || world.Diff[0].Path != "properties.desired.fw" {
		t.Fatalf("world diff %+v", world.Diff)
	}
	from := map[string]int{}
	for _, v := range world.Diff[0].From {
		from[v.Value] = v.Devices
	}
	// us's configuration has written fw "0" to its main devices already.
	if from[`"1"`] != 6 || from[`"0"`] != 200 || from[""] != 10 {
		t.Errorf("world diff from %v, want 6 from \"1\" (us canaries), 200 from \"0\" (us main), 10 absent (eu main)", from)
	}
	for _, id := range world.Sample {
		if !strings.HasPrefix(id, "eu/") && !strings.HasPrefix(id, "us/") {
			t.Errorf("sample id %q names no hub", id)
		}
	}
	var conflicts []engine.Finding
	for _, f := range pv.Findings {
		if f.Code == engine.FindingConfiguration {
			conflicts = append(conflicts, f)
		}
	}
	if len(conflicts) != 1 || conflicts[0].Hub != "us" || conflicts[0].Wave != "world" || !strings.Contains(conflicts[0].Message, "us-fw") {
		t.Errorf("configuration findings %+v, want us-fw on hub us, wave world", conflicts)
	}
}
