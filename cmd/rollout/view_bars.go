package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// barView shows a bar per wave (devices done of total, successes, failures, then the ETA while its
// jobs run, or what the wave is doing: waiting, verifying, done, halted, rolled back) and writes the
// other events as lines above the bars.
type barView struct {
	p        *mpb.Progress
	mu       sync.Mutex
	bars     map[int]*waveBar
	order    []int // the waves with a bar, in the order their bars were made
	lastRate map[int]float64
	hints    hints
}

type waveBar struct {
	bar              *mpb.Bar
	doneBefore       int           // devices of finished batches
	base             engine.Counts // counts of finished batches
	last             time.Time     // when the bar last moved, for the ETA's rate
	eta              decor.Decorator
	total, done      atomic.Int64 // read by the render goroutine, as are the fields below
	succeeded, fails atomic.Int64
	phase            atomic.Pointer[string] // what the wave does, as phaseOf words it; "" while its jobs run
}

// advance moves the bar to done devices, telling the ETA how long the move took.
func (wb *waveBar) advance(done int, at time.Time) {
	d := at.Sub(wb.last)
	if wb.last.IsZero() || d <= 0 {
		d = time.Millisecond
	}
	wb.last = at
	wb.done.Store(int64(done))
	wb.bar.EwmaSetCurrent(int64(done), d)
}

func (wb *waveBar) setPhase(p string) { wb.phase.Store(&p) }

func (wb *waveBar) phaseText() string {
	if p := wb.phase.Load(); p != nil {
		return *p
	}
	return ""
}

func newBarView(w io.Writer, h hints) *barView {
	return &barView{p: mpb.New(mpb.WithOutput(w), mpb.WithRefreshRate(150*time.Millisecond), mpb.WithAutoRefresh()),
		bars: map[int]*waveBar{}, lastRate: map[int]float64{}, hints: h}
}

// barOf is the bar of the event's wave, made when the wave first shows: a wave waiting for its
// approval has a bar before its devices are known.
func (v *barView) barOf(ev engine.Event) *waveBar {
	if wb := v.bars[ev.Wave]; wb != nil {
		return wb
	}
	wb := &waveBar{last: ev.Time}
	wb.eta = decor.EwmaETA(decor.ET_STYLE_GO, 30)
	// A bar stays live until close, so mpb keeps flushing the lines written above the bars.
	wb.bar = v.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-12s", ev.WaveName)), decor.Any(func(decor.Statistics) string {
			return fmt.Sprintf("%d/%d devices", wb.done.Load(), wb.total.Load())
		})),
		mpb.AppendDecorators(decor.Any(func(s decor.Statistics) string {
			text := fmt.Sprintf("  ok %d  failed %d  ", wb.succeeded.Load(), wb.fails.Load())
			if p := wb.phaseText(); p != "" {
				return text + p
			}
			eta, _ := wb.eta.Decor(s)
			return text + eta
		})))
	wb.bar.SetTotal(1, false)
	v.bars[ev.Wave] = wb
	v.order = append(v.order, ev.Wave)
	return wb
}

func (v *barView) Event(ev engine.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Type {
	case engine.EventWaveStarted:
		wb := v.barOf(ev)
		wb.total.Store(int64(ev.Devices))
		wb.bar.SetTotal(int64(max(ev.Devices, 1)), false)
	case engine.EventBatchProgress:
		if wb := v.bars[ev.Wave]; wb != nil && ev.Counts != nil {
			// A running batch's counts include its collected jobs' timed-out and unreachable devices,
			// which the finished batches' failures count too.
			c := wb.base.Add(*ev.Counts)
			wb.succeeded.Store(int64(c.Succeeded))
			wb.fails.Store(int64(c.Failed + c.TimedOut + c.Unreachable))
			wb.advance(wb.doneBefore+ev.Done, ev.Time)
		}
	case engine.EventBatchDone:
		if wb := v.bars[ev.Wave]; wb != nil && ev.Counts != nil {
			wb.base = wb.base.Add(*ev.Counts)
			wb.doneBefore += ev.Devices
			wb.succeeded.Store(int64(wb.base.Succeeded))
			wb.fails.Store(int64(wb.base.Failed + wb.base.TimedOut + wb.base.Unreachable))
			wb.advance(wb.doneBefore, ev.Time)
		}
	case engine.EventWaveDone:
		if wb := v.bars[ev.Wave]; wb != nil {
			wb.bar.SetCurrent(max(wb.total.Load(), 1))
		}
	case engine.EventVerify:
		if r, ok := v.lastRate[ev.Wave]; ok && r == ev.Rate {
			v.setPhases(ev)
			return
		}
		v.lastRate[ev.Wave] = ev.Rate
	}
	v.setPhases(ev)
	line := describe(ev, v.hints)
	if line == "" || ev.Type == engine.EventBatchDone {
		return
	}
	fmt.Fprintf(v.p, "%s %s\n", ev.Time.Local().Format("15:04:05"), line)
}

// setPhases words on the bars what ev says the waves do.
func (v *barView) setPhases(ev engine.Event) {
	phase, scope := phaseOf(ev)
	switch scope {
	case scopeWave:
		if ev.Wave >= 0 && (ev.Type != engine.EventWaiting || ev.WaveName != "") {
			v.barOf(ev).setPhase(phase)
		}
	case scopeStarted, scopeUnfinished:
		for _, w := range v.order {
			wb := v.bars[w]
			if scope == scopeUnfinished && wb.phaseText() == "done" {
				continue
			}
			if wb.total.Load() > 0 || scope == scopeUnfinished {
				wb.setPhase(phase)
			}
		}
	}
}

func (v *barView) close() {
	v.mu.Lock()
	for _, wb := range v.bars {
		wb.bar.SetTotal(-1, true)
	}
	v.mu.Unlock()
	v.p.Wait()
}

// phaseScope says which bars a phase is for.
type phaseScope int

const (
	scopeNone       phaseScope = iota
	scopeWave                  // the event's wave
	scopeStarted               // every wave that started (a rollback undoes them all)
	scopeUnfinished            // every wave with a bar that is not done
)

// phaseOf words what ev says a wave now does, for its bar, and which bars it is for; "" while the
// wave's jobs run (the bar shows the ETA).
func phaseOf(ev engine.Event) (string, phaseScope) {
	switch ev.Type {
	case engine.EventWaveStarted, engine.EventJobCreated, engine.EventJobAttached:
		return "", scopeWave
	case engine.EventWaiting:
		switch ev.Reason {
		case "approval":
			return "waiting for approval", scopeWave
		case "paused":
			return "paused", scopeWave
		case "schedule":
			return "waiting for its window", scopeWave
		case "bake":
			return "baking until " + ev.Until.Local().Format("15:04:05"), scopeWave
		}
		return "waiting (" + ev.Reason + ")", scopeWave
	case engine.EventVerify:
		return fmt.Sprintf("verify %d/%d satisfied (%.1f%%)", ev.Done, ev.Devices, ev.Rate*100), scopeWave
	case engine.EventGateFailed:
		return "gate failed", scopeWave
	case engine.EventHalted:
		return "halted", scopeWave
	case engine.EventWaveDone:
		return "done", scopeWave
	case engine.EventRollbackStarted:
		return "rolling back", scopeStarted
	case engine.EventRolledBack:
		return "rolled back", scopeStarted
	case engine.EventStopped:
		return "stopped", scopeUnfinished
	}
	return "", scopeNone
}
