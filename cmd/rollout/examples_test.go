package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/plan"
)

// TestExamplesRunOnEmulator runs every plan a user copies from against the embedded emulator, with
// --no-wait as cron would, until it first waits (a bake, verify, approval or schedule window) or ends:
// each must start, and each whose schedule allows it must get its first wave's first batch done.
func TestExamplesRunOnEmulator(t *testing.T) {
	plans, err := filepath.Glob(filepath.Join("..", "..", "plans", "examples", "*.yaml"))
	if err != nil || len(plans) < 5 {
		t.Fatalf("example plans: %v (%d found)", err, len(plans))
	}
	fleet := filepath.Join("..", "..", "testdata", "fleets", "examples.yaml")
	for _, p := range plans {
		t.Run(filepath.Base(p), func(t *testing.T) {
			state := t.TempDir()
			emulate := []string{"--emulate", fleet}
			if pl, _ := plan.LoadFile(p); pl != nil && len(pl.Hubs) > 0 {
				// A plan over several hubs runs with an emulated hub each, all on the same fleet.
				emulate = nil
				for _, h := range pl.Hubs {
					emulate = append(emulate, "--emulate", h.Name+"="+fleet)
				}
			}
			var events bytes.Buffer
			code := -1
			for run := 0; run < 100 && code != exitWaiting; run++ {
				var out, stderr bytes.Buffer
				args := append(append([]string{"apply"}, emulate...), "--state", state, "--no-wait", "--output", "json", p)
				code = Main(args,
					strings.NewReader(""), &out, &stderr)
				events.Write(out.Bytes())
				if code != exitOK && code != exitWaiting {
					t.Fatalf("run %d: exit %d\nstderr: %s\nevents:\n%s", run, code, stderr.String(), events.String())
				}
				if strings.Contains(out.String(), `"type":"done"`) {
					break
				}
			}
			got := events.String()
			if !strings.Contains(got, `"type":"started"`) {
				t.Fatalf("no started event:\n%s", got)
			}
			scheduleWait := strings.Contains(got, `"reason":"schedule"`)
			if !scheduleWait && !strings.Contains(got, `"type":"batchDone"`) {
				t.Errorf("neither a batch done nor a schedule wait:\n%s", got)
			}
			if strings.Contains(got, `"type":"gateFailed"`) || strings.Contains(got, `"type":"halted"`) {
				t.Errorf("an example failed a gate on a healthy fleet:\n%s", got)
			}
		})
	}
}
