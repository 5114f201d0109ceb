package engine

import (
	"math"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

func seconds(s float64) time.Duration {
	if s <= 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}

// perSec is n operations at rate per second, as a duration (0 when the rate is unlimited).
func perSec(n int, rate float64) time.Duration {
	if rate <= 0 || math.IsInf(rate, 1) {
		return 0
	}
	return seconds(float64(n) / rate)
}

// estimate is how long wave i takes, or still takes when apply started it (sw), under the estimate
// quotas: apply pages through the wave's
// candidate ids, captures prior twin values per batch (by query or by reads, whichever the tier makes
// faster, as the engine chooses), runs the jobs at the tier's job device operations per second with
// its concurrent jobs, polls each round of jobs, then bakes while verify polls.
func (pv *previewer) estimate(i int, w *WavePreview, sw *Wave) Estimate {
	q := pv.Estimate
	pw := pv.p.Waves[i]
	if sw != nil && (sw.Status == StatusDone || sw.Status == StatusFailed) {
		return Estimate{}
	}
	page := q.MaxPageSize
	if page <= 0 {
		page = hubapi.MaxPageSize
	}
	qps := q.QueriesPerMinute / 60
	var e Estimate
	if pw.Approval && (sw == nil || sw.Status == StatusPending) {
		e.Approvals = 1
	}
	if !w.Stored {
		e.Resolve = perSec((w.Candidates+page-1)/page, qps)
	}
	// Only the batches apply has not finished are still to run.
	var todo []BatchPreview
	for b, bp := range w.Batches {
		if sw == nil || b >= len(sw.Batches) || sw.Batches[b].Status != StatusDone {
			todo = append(todo, bp)
		}
	}
	if sw != nil && sw.Status == StatusBaking {
		todo = nil
	}
	devices := 0
	for _, b := range todo {
		devices += b.Devices
	}
	if pw.Action.TwinUpdate != nil {
		byQuery := perSec((devices+page-1)/page+len(todo), qps)
		byReads := perSec(devices, q.TwinReadsPerSec)
		e.Snapshot = byQuery
		if byReads < byQuery || math.IsInf(qps, 1) {
			e.Snapshot = min(byQuery, byReads)
		}
	}
	conc := max(1, q.ConcurrentJobs)
	var poll time.Duration
	if jpm := q.JobOpsPerMinute; jpm > 0 && !math.IsInf(jpm, 1) {
		poll = seconds(1.5 * 60 / jpm * float64(conc))
	}
	for _, b := range todo {
		rounds := (b.Jobs + conc - 1) / conc
		e.Jobs += perSec(b.Devices, q.JobDeviceOpsPerSec) + time.Duration(rounds)*poll
	}
	if w.Devices == 0 {
		// An empty wave passes its gate at once and is done without bake or verify.
		e.Total, e.Worst = e.Resolve, e.Resolve
		return e
	}
	e.Bake = pw.Bake
	var verifyRead time.Duration
	if pw.Verify != nil {
		verifyRead = perSec(w.Devices/500+1, qps)
		e.Verify = max(pw.Verify.Within, verifyRead)
	}
	if sw != nil && sw.Status == StatusBaking {
		// The bake and the verify window run from the bake's start.
		elapsed := max(0, pv.Now.Sub(sw.BakeStart)).Round(time.Second)
		e.Bake = max(0, e.Bake-elapsed)
		if sw.VerifyOK {
			e.Verify, verifyRead = 0, 0
		} else if e.Verify > 0 {
			e.Verify = max(verifyRead, e.Verify-elapsed)
		}
	}
	work := e.Resolve + e.Snapshot + e.Jobs
	e.Total = work + max(e.Bake, verifyRead)
	e.Worst = work + max(e.Bake, e.Verify)
	return e
}
