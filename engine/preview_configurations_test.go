package engine_test

import (
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/plan"
)

const configurationsFleet = `
groups:
  - {name: canary, count: 3, tags: {ring: canary, region: eu}}
  - {name: main, count: 5, tags: {ring: main, region: eu}}
  - {name: us, count: 2, tags: {ring: main, region: us}}
configurations:
  - id: pin-firmware
    priority: 7
    targetCondition: "tags.ring = 'canary'"
    content: {deviceContent: {properties.desired.firmware: {version: "2.3.0"}}}
  - id: us-firmware
    priority: 3
    targetCondition: "tags.region = 'us'"
    content: {deviceContent: {properties.desired.firmware.version: "2.3.0"}}
  - id: eco-mode
    priority: 9
    targetCondition: "*"
    content: {deviceContent: {properties.desired.mode: eco}}
`

const configurationsPlan = `
version: 1
name: fw-2-4
action:
  twinUpdate:
    desired: {firmware: {version: "2.4.0"}}
waves:
  - name: canary
    target: "tags.ring = 'canary'"
  - name: eu
    target: "tags.region = 'eu'"
`

// TestPreviewConfigurations checks that plan finds the automatic device configurations that would
// undo the rollout: one that targets a wave's devices and writes a path the plan patches, with its id
// and priority, and none that writes other paths or targets no device of the wave.
func TestPreviewConfigurations(t *testing.T) {
	srv, c := enginetest.Hub(t, configurationsFleet, emulator.Options{})
	p, ds := plan.Load("plan.yaml", []byte(configurationsPlan))
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	pv := preview(t, srv, c, p, engine.PreviewOptions{})
	var got []engine.Finding
	for _, f := range pv.Findings {
		if f.Code == engine.FindingConfiguration {
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		t.Fatalf("configuration findings %+v, want one for pin-firmware on the canary wave", got)
	}
	f := got[0]
	if f.Wave != "canary" || f.Severity != plan.Warning || !strings.Contains(f.Message, `"pin-firmware" (priority 7)`) ||
		!strings.Contains(f.Message, "properties.desired.firmware,") || !strings.Contains(f.Message, "3 devices") {
		t.Errorf("finding %+v", f)
	}

	// A direct-method plan patches no twin: no configuration undoes it.
	mp, ds := plan.Load("m.yaml", []byte(strings.Replace(configurationsPlan,
		`twinUpdate:
    desired: {firmware: {version: "2.4.0"}}`, `directMethod: {name: reboot}
rollback:
  directMethod: {name: revert}`, 1)))
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	if codes := findingCodes(preview(t, srv, c, mp, engine.PreviewOptions{})); len(codes[engine.FindingConfiguration]) != 0 {
		t.Errorf("a direct-method plan got configuration findings: %v", codes)
	}
}
