package engine

import (
	"fmt"

	"github.com/iot-rollout/rollout/plan"
)

func (pv *previewer) findings() {
	add := func(code, wave, msg string, args ...any) {
		pv.out.Findings = append(pv.out.Findings, Finding{Severity: plan.Warning, Code: code, Wave: wave,
			Message: fmt.Sprintf(msg, args...)})
	}
	if s := pv.out.State; s != nil && s.PlanChanged {
		add(FindingPlanChanged, "", "%s", s.Summary)
	}
	for i, w := range pv.out.Waves {
		pw := pv.p.Waves[i]
		if !w.Exact {
			add(FindingEstimated, w.Name, "about %d devices: resolving this wave by id would exceed the query budget of %d queries; raise it (--max-queries) for an exact count",
				w.Devices, pv.MaxQueries)
		}

		if w.Skipped > 0 {
			add(FindingUndefined, w.Name, "%d devices that fleet AND target select, and no earlier wave takes, lack a property an earlier wave's target tests: NOT over a missing property is not true on IoT Hub, so the composed condition skips them and no wave takes them here",
				w.Skipped)
		}
		if w.Devices == 0 && w.Exact {
			// What apply will do with it: an empty wave halts the rollout unless it allows that.
			consequence := "apply halts the rollout here (exit 2) unless the wave says allowEmpty: true"
			if pw.AllowEmpty {
				consequence = "allowEmpty: true lets the rollout go on"
			}
			if pw.Percent < 100 && w.Candidates > 0 {
				add(FindingPercentZero, w.Name, "its %s sample of %d candidate devices selects none: %s", pctOf(pw.Percent), w.Candidates, consequence)
			} else {
				add(FindingEmptyWave, w.Name, "the wave selects no device: %s", consequence)
			}
			if !pw.AllowEmpty {
				pv.out.Findings[len(pv.out.Findings)-1].Severity = plan.Error
			}
		}
		if i == 0 && pv.MaxFirstWave > 0 && w.Devices > pv.MaxFirstWave {
			add(FindingFirstWave, w.Name, "the first wave takes %s, more than the limit of %d", plural(w.Devices, "device"), pv.MaxFirstWave)
		}
		if w.VerifyHolds != nil && w.Devices > 0 {
			rate := float64(*w.VerifyHolds) / float64(w.Devices)
			if rate+1e-9 >= pw.Verify.MinRate {
				add(FindingVerifyHolds, w.Name, "verify condition %q already holds for %d of %d devices (%s, minRate %s) before the change: the gate proves nothing",
					pw.Verify.Condition, *w.VerifyHolds, w.Devices, pct(rate), pct(pw.Verify.MinRate))
			}
		}
		if w.Offline != nil && *w.Offline > 0 {
			wait := "connectTimeout is 0, so they count as unreachable"
			if ct := pw.Action.DirectMethod.ConnectTimeout; ct > 0 {
				wait = fmt.Sprintf("a direct method reaches them only if they connect within connectTimeout %s, otherwise they count as unreachable", ct)
			}
			add(FindingOffline, w.Name, "%d of %d devices are offline now: %s", *w.Offline, w.Devices, wait)
		}
	}
	if pv.out.Untargeted > 0 {
		add(FindingUntargeted, "", "%d of %d fleet devices are in no wave", pv.out.Untargeted, pv.out.FleetDevices)
	}
}

func pctOf(p float64) string {
	return pct(p / 100)
}
