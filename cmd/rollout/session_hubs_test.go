package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/iot-rollout/rollout/engine/enginetest"
)

// TestHubsPaceToTheirTier: each hub of a plan with hubs paces to the plan's tier for it, else to
// --tier, else to the tier the hub states (both emulators here state unlimited).
func TestHubsPaceToTheirTier(t *testing.T) {
	dir := t.TempDir()
	_, list := startHubs(t, dir, map[string]string{"eu": "groups: []\n", "us": "groups: []\n"})
	vars := envOf(list)
	p := enginetest.Plan(t, `
version: 1
name: tiers
hubs:
  eu: {connection: env:IOTHUB_EU, tier: S3, units: 2}
  us: {connection: env:IOTHUB_US}
action:
  twinUpdate: {desired: {mode: eco}}
waves:
  - {name: all, allowEmpty: true}
`)
	for _, tc := range []struct{ tier, wantUS string }{{"", "unlimited"}, {"S2", "S2"}} {
		f := &hubFlags{tier: tc.tier, units: 1, caFile: filepath.Join(dir, "ca.pem")}
		var stderr bytes.Buffer
		s, err := f.connectHubs(context.Background(), &env{stderr: &stderr, getenv: func(k string) string { return vars[k] }}, p)
		if err != nil {
			t.Fatal(err)
		}
		eu, us := s.parts["eu"].Quotas, s.parts["us"].Quotas
		if eu.Tier != "S3" || eu.Units != 2 || us.Tier != tc.wantUS {
			t.Errorf("--tier %q: eu %s × %d, us %s; want eu S3 × 2, us %s", tc.tier, eu.Tier, eu.Units, us.Tier, tc.wantUS)
		}
		s.close()
	}
}
