package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlanExitCodes runs `rollout plan` in-process and checks the exit codes the README promises: 0
// for a preview with findings, 2 with --fail-on-warning, 1 for usage and plan errors (before any hub is
// dialled), 4 when no hub can be reached.
func TestPlanExitCodes(t *testing.T) {
	const fleet = "../../engine/testdata/preview/fleet.yaml"
	const plans = "../../engine/testdata/preview/"
	clean := filepath.Join(t.TempDir(), "clean.yaml")
	if err := os.WriteFile(clean, []byte(cleanPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{"findings", []string{"--emulate", fleet, plans + "method.yaml"}, nil, exitOK, ""},
		{"fail on warning", []string{"--emulate", fleet, "--fail-on-warning", plans + "method.yaml"}, nil, exitFindings, ""},
		{"no findings", []string{"--emulate", fleet, "--fail-on-warning", clean}, nil, exitOK, ""},
		{"bad format", []string{"--format", "yaml", plans + "method.yaml"}, nil, exitInvalid, "unknown --format"},
		{"bad plan", []string{"--emulate", fleet, fleet}, nil, exitInvalid, "the plan is invalid"},
		{"missing plan", []string{"--emulate", fleet, plans + "nope.yaml"}, nil, exitInvalid, "nope.yaml"},
		{"no hub", []string{plans + "method.yaml"}, nil, exitHub, "no hub"},
		{"bad connection string", []string{plans + "method.yaml"},
			map[string]string{"IOTHUB_CONNECTION_STRING": "HostName=x;SharedAccessKey=secret-key-value"}, exitHub, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(k string) string { return tc.env[k] }
			code := mainEnv(append([]string{"plan"}, tc.args...), strings.NewReader(""), &stdout, &stderr, getenv)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.stderr)
			}
			if strings.Contains(stderr.String()+stdout.String(), "secret-key-value") {
				t.Error("the key was echoed")
			}
		})
	}
}

// cleanPlan has nothing for the preview to find in the preview fleet: one wave takes the whole fleet.
const cleanPlan = `
version: 1
name: tag-us
fleet: "tags.region = 'us'"
action:
  twinUpdate:
    tags: {site: west}
waves:
  - name: all
    target: "*"
`
