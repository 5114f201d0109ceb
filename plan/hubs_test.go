package plan_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

const hubsPlan = `version: 1
name: hubs
action:
  twinUpdate: {desired: {mode: eco}}
hubs:
  us: {host: contoso-us.azure-devices.net, tier: S2}
  eu: {connection: env:IOTHUB_EU_CONNECTION_STRING, tier: S3, units: 2}
waves:
  - {name: canary, hubs: [eu], target: "tags.ring = 'canary'"}
  - {name: eu, hubs: [eu], target: "tags.region = 'eu'"}
  - {name: world}
`

// TestHubs checks how a plan's hubs resolve: sorted, by reference, each wave on its own hubs or on
// every hub, and each wave's condition on a hub excluding only the earlier waves that ran there.
func TestHubs(t *testing.T) {
	p, ds := plan.Load("hubs.yaml", []byte(hubsPlan))
	if p == nil {
		t.Fatalf("plan did not load: %v", ds)
	}
	want := []plan.Hub{
		{Name: "eu", Connection: "IOTHUB_EU_CONNECTION_STRING", Tier: "S3", Units: 2},
		{Name: "us", Host: "contoso-us.azure-devices.net", Tier: "S2", Units: 1},
	}
	if !slices.Equal(p.Hubs, want) {
		t.Errorf("hubs = %+v, want %+v", p.Hubs, want)
	}
	for i, hubs := range [][]string{{"eu"}, {"eu"}, {"eu", "us"}} {
		if !slices.Equal(p.Waves[i].Hubs, hubs) {
			t.Errorf("wave %d hubs = %v, want %v", i, p.Waves[i].Hubs, hubs)
		}
	}
	for _, c := range []struct {
		wave int
		hub  string
		want string
	}{
		{2, "eu", "NOT ((IS_DEFINED(tags.ring) AND tags.ring = 'canary') OR (IS_DEFINED(tags.region) AND tags.region = 'eu'))"},
		{2, "us", "*"},
		{2, "", "*"}, // Condition: valid on every hub of the wave
		{1, "eu", "tags.region = 'eu' AND NOT (IS_DEFINED(tags.ring) AND tags.ring = 'canary')"},
	} {
		got := query.Format(p.ConditionOn(c.wave, c.hub))
		if got != c.want {
			t.Errorf("ConditionOn(%d, %q) = %s, want %s", c.wave, c.hub, got, c.want)
		}
	}
}

// TestOnHub checks each hub's part of a plan: the waves that run there, as a plan without hubs whose
// conditions are the waves' conditions on that hub.
func TestOnHub(t *testing.T) {
	p, ds := plan.Load("hubs.yaml", []byte(hubsPlan))
	if p == nil {
		t.Fatalf("plan did not load: %v", ds)
	}
	for hub, waves := range map[string][]int{"eu": {0, 1, 2}, "us": {2}} {
		on := p.OnHub(hub)
		if on == nil || len(on.Waves) != len(waves) || on.Hubs != nil || on.Hash != p.Hash {
			t.Fatalf("OnHub(%s) = %+v, want waves %v of the plan, no hubs, the plan's hash", hub, on, waves)
		}
		for i, wi := range waves {
			if on.Waves[i].Name != p.Waves[wi].Name || on.Waves[i].Hubs != nil {
				t.Errorf("OnHub(%s) wave %d = %s on %v, want %s on no hub", hub, i, on.Waves[i].Name, on.Waves[i].Hubs, p.Waves[wi].Name)
			}
			if got, want := query.Format(on.Condition(i)), query.Format(p.ConditionOn(wi, hub)); got != want {
				t.Errorf("OnHub(%s) wave %s condition %s, want %s", hub, on.Waves[i].Name, got, want)
			}
		}
	}
	if p.OnHub("jp") != nil {
		t.Error("OnHub of a hub no wave runs on is not nil")
	}
}

// TestHubsChangeHash checks that the hubs a plan runs on are part of what it does, and that plans
// without hubs keep the hash they had.
func TestHubsChangeHash(t *testing.T) {
	p1, _ := plan.Load("a.yaml", []byte(hubsPlan))
	p2, _ := plan.Load("b.yaml", []byte(strings.Replace(hubsPlan, "hubs: [eu], target: \"tags.region", "target: \"tags.region", 1)))
	if p1 == nil || p2 == nil {
		t.Fatal("plans did not load")
	}
	if p1.Hash == p2.Hash {
		t.Error("moving a wave from one hub to every hub left the plan hash unchanged")
	}
	// How a hub is reached is not what the rollout does.
	p3, _ := plan.Load("c.yaml", []byte(strings.Replace(hubsPlan, "env:IOTHUB_EU_CONNECTION_STRING", "env:EU", 1)))
	if p3 == nil || p3.Hash != p1.Hash {
		t.Error("renaming a hub's connection variable changed the plan hash")
	}
}

// TestHubSecretNotEchoed checks that a connection string pasted into a plan appears in no
// diagnostic, in any rendering.
func TestHubSecretNotEchoed(t *testing.T) {
	const key = "c2VjcmV0LWtleS1uZXZlci1lY2hv"
	src := strings.Replace(hubsPlan, "env:IOTHUB_EU_CONNECTION_STRING", "'HostName=x.azure-devices.net;SharedAccessKeyName=s;SharedAccessKey="+key+"'", 1)
	p, ds := plan.Load("secret.yaml", []byte(src))
	if p != nil || !ds.HasErrors() {
		t.Fatal("a plan with a connection string in it loaded")
	}
	for _, d := range ds {
		if strings.Contains(d.String(), key) || strings.Contains(d.String(), "SharedAccessKey=") {
			t.Errorf("diagnostic echoes the secret: %s", d)
		}
	}
}
