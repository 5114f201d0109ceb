package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"golang.org/x/term"
)

// view renders engine events: JSON lines, plain lines, or live progress bars on a terminal.
type view interface {
	engine.Observer
	close()
}

type plainView struct{ engine.Observer }

func (plainView) close() {}

func newView(e *env, output string, h hints) view {
	if output == "json" {
		return plainView{jsonView{json.NewEncoder(e.stdout)}}
	}
	if f, ok := e.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newBarView(f, h)
	}
	return plainView{&lineView{w: e.stdout, hints: h, lastRate: map[int]float64{}}}
}

// jsonView writes one event per line.
type jsonView struct{ enc *json.Encoder }

func (v jsonView) Event(ev engine.Event) { _ = v.enc.Encode(ev) }

// lineView writes one plain line per notable event; verify reads only when the rate changed.
type lineView struct {
	w        io.Writer
	hints    hints
	lastRate map[int]float64
}

func (v *lineView) Event(ev engine.Event) {
	if ev.Type == engine.EventVerify {
		if r, ok := v.lastRate[ev.Wave]; ok && r == ev.Rate {
			return
		}
		v.lastRate[ev.Wave] = ev.Rate
	}
	if line := describe(ev, v.hints); line != "" {
		fmt.Fprintf(v.w, "%s %s\n", ev.Time.Local().Format("15:04:05"), line)
	}
}

// countsLine words a batch's or a wave's counts: succeeded of targeted, then what else happened.
func countsLine(c *engine.Counts) string {
	if c == nil {
		return ""
	}
	s := fmt.Sprintf("%d/%d succeeded", c.Succeeded, c.Targeted)
	var extra []string
	if c.Failed > 0 {
		extra = append(extra, fmt.Sprintf("%d failed", c.Failed))
	}
	if c.MethodError > 0 {
		extra = append(extra, fmt.Sprintf("%d of them method non-2xx", c.MethodError))
	}
	if c.TimedOut > 0 {
		extra = append(extra, fmt.Sprintf("%d timed out", c.TimedOut))
	}
	if c.Unreachable > 0 {
		extra = append(extra, fmt.Sprintf("%d unreachable", c.Unreachable))
	}
	if len(extra) > 0 {
		s += ", " + strings.Join(extra, ", ")
	}
	return s
}

// describe renders an event as a plain line; "" for events too frequent for a log.
func describe(ev engine.Event, h hints) string {
	wave := fmt.Sprintf("wave %s", ev.WaveName)
	batch := fmt.Sprintf("%s batch %d", wave, ev.Batch+1)
	if ev.Batches > 0 {
		batch = fmt.Sprintf("%s batch %d/%d", wave, ev.Batch+1, ev.Batches)
	}
	counts := countsLine
	switch ev.Type {
	case engine.EventStarted:
		return fmt.Sprintf("rollout %s: %s", ev.Rollout, plural(ev.Waves, "wave"))
	case engine.EventWaiting:
		switch ev.Reason {
		case "approval":
			return fmt.Sprintf("%s: waiting for approval (rollout approve %s --wave %s%s)", wave, ev.Rollout, ev.WaveName, h.state)
		case "paused":
			return fmt.Sprintf("paused before %s (rollout resume %s%s)", wave, ev.Rollout, h.state)
		default:
			return fmt.Sprintf("%s: waiting for the %s until %s", wave, ev.Reason, ev.Until.Local().Format(time.RFC3339))
		}
	case engine.EventReplanned:
		return fmt.Sprintf("the plan was edited before any job was created (%s): the rollout starts over with it", ev.Reason)
	case engine.EventApproved:
		s := fmt.Sprintf("%s: approved by %s at %s", wave, ev.By, ev.At.Local().Format(time.RFC3339))
		if ev.Reason != "" {
			s += ": " + ev.Reason
		}
		return s
	case engine.EventWaveStarted:
		return fmt.Sprintf("%s: %s in %s", wave, plural(ev.Devices, "device"), plural(ev.Batches, "batch"))
	case engine.EventJobCreated:
		return fmt.Sprintf("%s: job %s created for %s", batch, ev.Job, plural(ev.Devices, "device"))
	case engine.EventJobAttached:
		return fmt.Sprintf("%s: job %s re-attached", batch, ev.Job)
	case engine.EventBatchDone:
		return fmt.Sprintf("%s: %s", batch, counts(ev.Counts))
	case engine.EventRetry:
		s := fmt.Sprintf("%s: retry %d over %s connected", batch, ev.Attempt, plural(ev.Devices, "device"))
		if ev.Waited > 0 {
			s += fmt.Sprintf(", %d not connected wait for the next", ev.Waited)
		}
		return s
	case engine.EventRetryDone:
		return fmt.Sprintf("%s: after retry %d: %s", batch, ev.Attempt, counts(ev.Counts))
	case engine.EventGatePassed:
		if ev.Batch < 0 {
			return fmt.Sprintf("%s: success gate passed (%s)", wave, counts(ev.Counts))
		}
		return ""
	case engine.EventGateFailed:
		return fmt.Sprintf("%s: gate failed: %s", wave, ev.Reason)
	case engine.EventVerify:
		return fmt.Sprintf("%s: verify %d/%d devices (%.1f%%)", wave, ev.Done, ev.Devices, ev.Rate*100)
	case engine.EventWaveDone:
		return fmt.Sprintf("%s: done", wave)
	case engine.EventHalted:
		return fmt.Sprintf("halted: %s", ev.Reason)
	case engine.EventRollbackStarted:
		return fmt.Sprintf("rolling back: %s", ev.Reason)
	case engine.EventRollbackBatch:
		c := ev.Counts
		s := fmt.Sprintf("%s rolled back: %s restored, %d failed", batch, plural(c.Succeeded, "device"), c.Failed)
		if ev.Conflicts > 0 {
			s += fmt.Sprintf(", %d left alone (changed since the rollout)", ev.Conflicts)
		}
		return s
	case engine.EventRolledBack:
		s := fmt.Sprintf("rolled back %s", plural(ev.Devices, "device"))
		if ev.Conflicts > 0 {
			s += fmt.Sprintf("; %s left alone: someone changed what the rollout wrote (the report lists them; `rollout rollback %s --force%s` restores them anyway)",
				plural(ev.Conflicts, "device"), ev.Rollout, h.hub)
		}
		return s
	case engine.EventDone:
		return "rollout done"
	case engine.EventStopped:
		return "stopped at a safe point; run the same command again to continue"
	}
	return ""
}
