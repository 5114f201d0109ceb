package emulator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

func TestParseFleet(t *testing.T) {
	f, err := emulator.LoadFleet("../testdata/fleets/thermostats.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Groups) != 3 || len(f.Devices) != 2 {
		t.Fatalf("%d groups, %d devices", len(f.Groups), len(f.Devices))
	}
	eu := f.Groups[1]
	if eu.Behavior.Offline != 0.05 || eu.Behavior.MethodLatency != 50*time.Millisecond || eu.Behavior.ConvergeDelay != 500*time.Millisecond {
		t.Errorf("eu behaviour %+v", eu.Behavior)
	}
	if got := emulator.GroupDeviceID(&f.Groups[0], 7); got != "canary-0007" {
		t.Errorf("id %q", got)
	}
	if got := emulator.GroupDeviceID(&emulator.Group{IDPrefix: "x-", Count: 123456}, 42); got != "x-000042" {
		t.Errorf("wide id %q", got)
	}
	// Explicit devices inherit the fleet defaults.
	if f.Devices[0].Behavior.ConvergeDelay != time.Second {
		t.Errorf("explicit device behaviour %+v", f.Devices[0].Behavior)
	}
}

func TestExampleFleets(t *testing.T) {
	for _, name := range []string{"thermostats.yaml", "flaky.yaml", "million.yaml"} {
		if _, err := emulator.LoadFleet("../testdata/fleets/" + name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseFleetErrors(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown key", "groups:\n  - name: a\n    count: 1\n    colour: red\n", "colour"},
		{"no count", "groups:\n  - name: a\n", "count"},
		{"negative count", "groups:\n  - {name: a, count: -1}\n", "count"},
		{"duplicate group", "groups:\n  - {name: a, count: 1}\n  - {name: a, count: 1}\n", "twice"},
		{"bad share", "groups:\n  - {name: a, count: 1, behavior: {offline: 150%}}\n", "share"},
		{"bare number share", "groups:\n  - {name: a, count: 1, behavior: {offline: 5}}\n", "share"},
		{"bad duration", "groups:\n  - {name: a, count: 1, behavior: {methodLatency: fast}}\n", "duration"},
		{"bad tag name", "groups:\n  - {name: a, count: 1, tags: {a.b: 1}}\n", "a.b"},
		{"bad device id", "devices:\n  - {deviceId: 'a/b'}\n", "a/b"},
		{"no device id", "devices:\n  - {tags: {a: 1}}\n", "empty"},
		{"bad status", "devices:\n  - {deviceId: d, status: on}\n", "status"},
		{"bad prefix", "groups:\n  - {name: a, count: 1, idPrefix: 'a/'}\n", "idPrefix"},
		{"not yaml", "groups: [", "fleet.yaml"},
		{"too many", "groups:\n  - {name: a, count: 30000000}\n", "more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := emulator.ParseFleet("fleet.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	// A duplicate id across group and explicit devices is refused at start.
	f, err := emulator.ParseFleet("dup.yaml", []byte("groups:\n  - {name: a, count: 2, idPrefix: d-}\ndevices:\n  - {deviceId: d-0001}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := emulator.Start(t.Context(), emulator.Options{Fleet: f}); err == nil || !strings.Contains(err.Error(), "d-0001") {
		if s != nil {
			s.Close()
		}
		t.Errorf("duplicate device accepted: %v", err)
	}
	// A twin pasted from a hub, read-only fields and $metadata included, is accepted.
	pasted := `devices:
  - deviceId: pasted-1
    etag: AAAAAAAAAAE=
    deviceEtag: NjEyMDQ0NTEz
    version: 4
    status: enabled
    statusUpdateTime: "0001-01-01T00:00:00Z"
    connectionState: Connected
    lastActivityTime: "0001-01-01T00:00:00Z"
    cloudToDeviceMessageCount: 0
    authenticationType: sas
    x509Thumbprint: {primaryThumbprint: null, secondaryThumbprint: null}
    capabilities: {iotEdge: false}
    tags: {building: "43"}
    properties:
      desired: {mode: eco, $metadata: {$lastUpdated: "2021-07-07T20:45:23.9479543Z"}, $version: 3}
      reported: {$metadata: {$lastUpdated: "2021-07-07T20:45:23.9479543Z"}, $version: 1}
`
	if f, err := emulator.ParseFleet("pasted.yaml", []byte(pasted)); err != nil || f.Devices[0].Desired["mode"] != "eco" || len(f.Devices[0].Desired) != 1 {
		t.Errorf("pasted twin: %v", err)
	}
	if f, err := emulator.ParseFleet("empty.yaml", nil); err != nil || len(f.Groups) != 0 {
		t.Errorf("empty fleet: %v", err)
	}
}

func TestParseFaults(t *testing.T) {
	f, err := emulator.ParseFaults("429=5%, 500=1%,503=0.02,drop=1%,slow=10%:250ms")
	if err != nil {
		t.Fatal(err)
	}
	want := emulator.Faults{Throttle: 0.05, ServerError: 0.01, Unavailable: 0.02, Drop: 0.01, Slow: 0.1, SlowDelay: 250 * time.Millisecond}
	if f != want {
		t.Errorf("%+v, want %+v", f, want)
	}
	for _, bad := range []string{"429", "404=1%", "429=200%", "slow=1%:soon", "429=60%,500=60%"} {
		if _, err := emulator.ParseFaults(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
