package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/acarl005/stripansi"
	"github.com/iot-rollout/rollout/engine"
)

func TestPhaseOf(t *testing.T) {
	until := time.Date(2026, 3, 1, 2, 30, 0, 0, time.Local)
	for _, tc := range []struct {
		ev    engine.Event
		phase string
		scope phaseScope
	}{
		{engine.Event{Type: engine.EventWaveStarted}, "", scopeWave},
		{engine.Event{Type: engine.EventWaiting, Reason: "approval"}, "waiting for approval", scopeWave},
		{engine.Event{Type: engine.EventWaiting, Reason: "bake", Until: until}, "baking until 02:30:00", scopeWave},
		{engine.Event{Type: engine.EventWaiting, Reason: "paused"}, "paused", scopeWave},
		{engine.Event{Type: engine.EventVerify, Done: 60, Devices: 80, Rate: 0.75}, "verify 60/80 satisfied (75.0%)", scopeWave},
		{engine.Event{Type: engine.EventGateFailed}, "gate failed", scopeWave},
		{engine.Event{Type: engine.EventHalted}, "halted", scopeWave},
		{engine.Event{Type: engine.EventWaveDone}, "done", scopeWave},
		{engine.Event{Type: engine.EventRollbackStarted}, "rolling back", scopeStarted},
		{engine.Event{Type: engine.EventRolledBack}, "rolled back", scopeStarted},
		{engine.Event{Type: engine.EventStopped}, "stopped", scopeUnfinished},
		{engine.Event{Type: engine.EventBatchProgress}, "", scopeNone},
	} {
		if phase, scope := phaseOf(tc.ev); phase != tc.phase || scope != tc.scope {
			t.Errorf("%s: %q, %d; want %q, %d", tc.ev.Type, phase, scope, tc.phase, tc.scope)
		}
	}
}

// TestBarsSayWhatHappened feeds the bars the demo's story: after the rollback, no bar reads done.
func TestBarsSayWhatHappened(t *testing.T) {
	var out bytes.Buffer
	v := newBarView(&out, hints{})
	now := time.Now()
	ev := func(e engine.Event) {
		e.Time, e.Rollout = now, "demo"
		v.Event(e)
	}
	waves := []struct {
		name    string
		devices int
	}{{"canary", 10}, {"eu", 60}, {"us", 80}}
	for i, w := range waves {
		c := &engine.Counts{Targeted: w.devices, Succeeded: w.devices}
		ev(engine.Event{Type: engine.EventWaveStarted, Wave: i, WaveName: w.name, Devices: w.devices, Batches: 1})
		ev(engine.Event{Type: engine.EventBatchDone, Wave: i, WaveName: w.name, Devices: w.devices, Counts: c})
		ev(engine.Event{Type: engine.EventWaiting, Wave: i, WaveName: w.name, Reason: "bake", Until: now})
		if w.name == "us" {
			ev(engine.Event{Type: engine.EventVerify, Wave: i, WaveName: w.name, Done: 60, Devices: 80, Rate: 0.75})
			ev(engine.Event{Type: engine.EventGateFailed, Wave: i, WaveName: w.name, Reason: "verify"})
			break
		}
		ev(engine.Event{Type: engine.EventWaveDone, Wave: i, WaveName: w.name})
	}
	ev(engine.Event{Type: engine.EventRollbackStarted, Wave: -1, Reason: "verify"})
	ev(engine.Event{Type: engine.EventRolledBack, Wave: -1, Devices: 150})
	v.close()
	screen := stripansi.Strip(out.String())
	for _, w := range waves {
		// The last frame's line of each bar.
		i := strings.LastIndex(screen, w.name+strings.Repeat(" ", 12-len(w.name)))
		if i < 0 {
			t.Fatalf("no bar for %s in:\n%s", w.name, screen)
		}
		line, _, _ := strings.Cut(screen[i:], "\n")
		if !strings.HasSuffix(strings.TrimSpace(line), "rolled back") || strings.Contains(line, "done") {
			t.Errorf("%s's bar reads %q, want it to end with rolled back", w.name, line)
		}
		if want := " failed 0 "; !strings.Contains(line, want) {
			t.Errorf("%s's bar %q lacks %q", w.name, line, want)
		}
	}
}
