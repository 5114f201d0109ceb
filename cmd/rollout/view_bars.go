package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// barView shows a bar per wave (devices done of total, successes, failures, ETA) and writes the other
// events as lines above the bars.
type barView struct {
	p        *mpb.Progress
	mu       sync.Mutex
	bars     map[int]*waveBar
	lastRate map[int]float64
	hints    hints
}

type waveBar struct {
	bar              *mpb.Bar
	total            int
	doneBefore       int           // devices of finished batches
	succeeded, fails atomic.Int64  // read by the render goroutine
	base             engine.Counts // counts of finished batches
	last             time.Time     // when the bar last moved, for the ETA's rate
}

// advance moves the bar to done devices, telling the ETA how long the move took.
func (wb *waveBar) advance(done int, at time.Time) {
	d := at.Sub(wb.last)
	if wb.last.IsZero() || d <= 0 {
		d = time.Millisecond
	}
	wb.last = at
	wb.bar.EwmaSetCurrent(int64(done), d)
}

func newBarView(f *os.File, h hints) *barView {
	return &barView{p: mpb.New(mpb.WithOutput(f), mpb.WithRefreshRate(150*time.Millisecond)),
		bars: map[int]*waveBar{}, lastRate: map[int]float64{}, hints: h}
}

func (v *barView) Event(ev engine.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch ev.Type {
	case engine.EventWaveStarted:
		wb := &waveBar{total: ev.Devices, last: ev.Time}
		// A bar made with total 0 completes only when told, so every bar stays live until close and
		// mpb keeps flushing the lines written above the bars.
		wb.bar = v.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-12s", ev.WaveName)), decor.CountersNoUnit("%d/%d devices")),
			mpb.AppendDecorators(
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("  ok %d  failed %d", wb.succeeded.Load(), wb.fails.Load())
				}),
				decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), "  done")))
		wb.bar.SetTotal(int64(max(ev.Devices, 1)), false)
		v.bars[ev.Wave] = wb
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
			wb.bar.SetCurrent(int64(max(wb.total, 1)))
		}
	case engine.EventVerify:
		if r, ok := v.lastRate[ev.Wave]; ok && r == ev.Rate {
			return
		}
		v.lastRate[ev.Wave] = ev.Rate
	}
	line := describe(ev, v.hints)
	if line == "" || ev.Type == engine.EventBatchDone {
		return
	}
	fmt.Fprintf(v.p, "%s %s\n", ev.Time.Local().Format("15:04:05"), line)
}

func (v *barView) close() {
	v.mu.Lock()
	for _, wb := range v.bars {
		wb.bar.SetTotal(-1, true)
	}
	v.mu.Unlock()
	v.p.Wait()
}
