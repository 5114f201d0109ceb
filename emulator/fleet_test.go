package emulator_test

import (
	"errors"
	"fmt"
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
	for _, c := range []struct {
		name, yaml string
		line, col  int
		path       string
		msg, hint  string // substrings of the first problem's message and hint
	}{
		{"unknown key", "groups:\n  - name: a\n    count: 1\n    colour: red\n", 4, 5, "groups[0].colour", `unknown key "colour" in group`, "known keys: "},
		{"misspelt key", "groups:\n  - name: a\n    count: 1\n    idprefix: a-\n", 4, 5, "groups[0].idprefix", `unknown key "idprefix"`, `did you mean "idPrefix"?`},
		{"misspelt top key", "group:\n  - {name: a, count: 1}\n", 1, 1, "group", `unknown key "group"`, `did you mean "groups"?`},
		{"misspelt behavior key", "defaults:\n  behavior: {ofline: 5%}\n", 2, 14, "defaults.behavior.ofline", `unknown key "ofline" in behavior`, `did you mean "offline"?`},
		{"count not a number", "groups:\n  - name: a\n    count: many\n", 3, 12, "groups[0].count", `count must be a whole number, found "many"`, ""},
		{"count a fraction", "groups:\n  - {name: a, count: 1.5}\n", 2, 22, "groups[0].count", "count must be a whole number, found 1.5", ""},
		{"no count", "groups:\n  - name: a\n", 2, 5, "groups[0]", `group "a" has no count`, "count: 100"},
		{"negative count", "groups:\n  - {name: a, count: -1}\n", 2, 22, "groups[0].count", "count must be zero or more, found -1", ""},
		{"duplicate group", "groups:\n  - {name: a, count: 1}\n  - {name: a, count: 1}\n", 3, 12, "groups[1].name", `group "a" is already defined at line 2`, ""},
		{"groups not a list", "groups: 3\n", 1, 9, "groups", "groups must be a list, found 3", ""},
		{"tags not a mapping", "groups:\n  - {name: a, count: 1, tags: [x]}\n", 2, 31, "groups[0].tags", "tags must be a mapping of keys, found a list", ""},
		{"bad share", "groups:\n  - {name: a, count: 1, behavior: {offline: 150%}}\n", 2, 45, "groups[0].behavior.offline", `offline: share "150%" is outside 0%..100%`, ""},
		{"bare number share", "groups:\n  - {name: a, count: 1, behavior: {offline: 5}}\n", 2, 45, "groups[0].behavior.offline", "offline: share", "write 5% for 5 percent"},
		{"bad duration", "groups:\n  - {name: a, count: 1, behavior: {methodLatency: fast}}\n", 2, 51, "groups[0].behavior.methodLatency", `methodLatency must be a duration such as 20ms or 2s, found "fast"`, ""},
		{"bad bool", "devices:\n  - {deviceId: d, capabilities: {iotEdge: maybe}}\n", 2, 43, "devices[0].capabilities.iotEdge", `iotEdge must be true or false, found "maybe"`, ""},
		{"bad tag name", "groups:\n  - {name: a, count: 1, tags: {a.b: 1}}\n", 2, 31, "groups[0].tags", "a.b", ""},
		{"bad device id", "devices:\n  - {deviceId: 'a/b'}\n", 2, 16, "devices[0].deviceId", "a/b", ""},
		{"no device id", "devices:\n  - {tags: {a: 1}}\n", 2, 5, "devices[0].deviceId", "empty", "deviceId"},
		{"bad status", "devices:\n  - {deviceId: d, status: on}\n", 2, 27, "devices[0].status", `status "on" is not enabled or disabled`, "enabled or disabled"},
		{"bad prefix", "groups:\n  - {name: a, count: 1, idPrefix: 'a/'}\n", 2, 35, "groups[0].idPrefix", `prefix "a/" has characters a device id cannot hold`, ""},
		{"not yaml", "groups: [", 1, 9, "", "invalid YAML: this [ is never closed: add ] at the end of the list", ""},
		{"unclosed brace", "groups:\n  - name: a\n    count: 1\n    tags: {ring: canary\n  - name: b\n", 4, 11, "", "invalid YAML: this { is never closed: add } at the end of the mapping", ""},
		{"tab", "groups:\n\t- name: a\n", 2, 1, "", "invalid YAML:", "spaces, not tabs"},
		{"bad indentation", "groups:\n  - name: a\n   count: 1\n", 2, 3, "", "invalid YAML: did not find expected '-' indicator", ""},
		{"not a mapping", "- a\n- b\n", 1, 1, "", "a fleet file must be a mapping of keys, found a list", ""},
		{"a plan", "version: 1\nname: x\nwaves:\n  - name: canary\n", 3, 1, "", "this looks like a plan file, not a fleet file", "--emulate"},
		{"too many", "groups:\n  - {name: a, count: 30000000}\n", 2, 22, "groups[0].count", "more than", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := emulator.ParseFleet("fleet.yaml", []byte(c.yaml))
			var fe *emulator.FleetError
			if !errors.As(err, &fe) || len(fe.Problems) == 0 {
				t.Fatalf("error %v, want a *FleetError", err)
			}
			p := fe.Problems[0]
			if fe.File != "fleet.yaml" || p.Line != c.line || p.Col != c.col || p.Path != c.path ||
				!strings.Contains(p.Message, c.msg) || !strings.Contains(p.Hint, c.hint) {
				t.Errorf("got %+v\nwant line %d col %d path %q, message with %q, hint with %q", p, c.line, c.col, c.path, c.msg, c.hint)
			}
			if want := fmt.Sprintf("fleet.yaml:%d:%d: %s", c.line, c.col, p.Message); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", err.Error(), want)
			}
			for _, goName := range []string{"!!", "unmarshal", "int", "string", "map[", "emulator."} {
				if strings.Contains(p.Message, goName) {
					t.Errorf("message %q holds the Go or YAML type word %q", p.Message, goName)
				}
			}
		})
	}
}

// TestParseFleetCollects checks that one pass reports every problem of a fleet, in file order.
func TestParseFleetCollects(t *testing.T) {
	_, err := emulator.ParseFleet("fleet.yaml", []byte("groups:\n  - {name: a, count: x}\n  - {name: b, count: 1, colour: red}\ndevices:\n  - {deviceId: d, status: on}\n"))
	var fe *emulator.FleetError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v, want a *FleetError", err)
	}
	var got []string
	for _, p := range fe.Problems {
		got = append(got, fmt.Sprintf("%d:%d %s", p.Line, p.Col, p.Path))
	}
	// The status is judged only once the file's shape is right, so it is not among them.
	want := []string{"2:22 groups[0].count", "3:25 groups[1].colour"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("problems at %v, want %v", got, want)
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != 2 {
		t.Errorf("Error() has %d lines, want one per problem:\n%s", lines, err)
	}
}

func TestParseFleetSemanticErrorsCollected(t *testing.T) {
	_, err := emulator.ParseFleet("fleet.yaml", []byte("groups:\n  - {name: a, count: -1}\ndevices:\n  - {deviceId: d, status: on}\n  - {deviceId: 'x/y'}\n"))
	var fe *emulator.FleetError
	if !errors.As(err, &fe) || len(fe.Problems) != 3 {
		t.Fatalf("error %v, want a *FleetError with 3 problems", err)
	}
}

// TestParseFleetEdges covers what parsing accepts but the emulator refuses, and what it accepts.
func TestParseFleetEdges(t *testing.T) {
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

func TestFleetDriver(t *testing.T) {
	f, err := emulator.ParseFleet("f.yaml", []byte("groups:\n  - {name: real, count: 2, idPrefix: real-, behavior: {driver: external}}\n  - {name: sim, count: 1, idPrefix: sim-, behavior: {driver: simulated}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Groups[0].Behavior.External || f.Groups[1].Behavior.External {
		t.Errorf("External = %v, %v; want true, false", f.Groups[0].Behavior.External, f.Groups[1].Behavior.External)
	}
	if _, err := emulator.ParseFleet("f.yaml", []byte("groups:\n  - {name: a, count: 1, behavior: {driver: robot}}\n")); err == nil || !strings.Contains(err.Error(), "robot") {
		t.Errorf("driver robot: error %v, want one naming it", err)
	}
}
