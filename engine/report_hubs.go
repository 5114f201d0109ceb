package engine

import (
	"sort"

	"github.com/iot-rollout/rollout/plan"
)

// HubSummary is one hub's devices in a rollout of a plan with hubs, by their outcomes: a device
// counts once, by its outcome in the report. Failed counts every ended outcome but success (failed,
// timed out, unreachable, method error); RolledBack the devices whose batch was rolled back.
type HubSummary struct {
	Hub        string `json:"hub"`
	Devices    int    `json:"devices"`
	Succeeded  int    `json:"succeeded"`
	Failed     int    `json:"failed"`
	Pending    int    `json:"pending"`
	RolledBack int    `json:"rolledBack"`
}

// HubSummaries sums rows by the hub their device ids name (HUB/DEVICE), in hub name order; nil when
// no id names a hub (a plan without hubs).
func HubSummaries(rows []ReportRow) []HubSummary {
	by := map[string]*HubSummary{}
	for _, r := range rows {
		hub, _, ok := plan.SplitID(r.Device)
		if !ok {
			continue
		}
		s := by[hub]
		if s == nil {
			s = &HubSummary{Hub: hub}
			by[hub] = s
		}
		s.Devices++
		switch r.Outcome {
		case Succeeded:
			s.Succeeded++
		case Pending:
			s.Pending++
		default:
			s.Failed++
		}
		if r.RolledBack {
			s.RolledBack++
		}
	}
	var out []HubSummary
	for _, s := range by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hub < out[j].Hub })
	return out
}
