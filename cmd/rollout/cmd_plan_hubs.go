package main

import (
	"strings"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

// hubTargets gives the preview each hub of a plan with hubs (nil for a plan without): its own client
// and quotas, and the tier its part's estimate assumes: the plan's tier for the hub, else the one
// --estimate-tier (or --tier, or S1) says.
func (o *planOptions) hubTargets(p *plan.Plan, sess *engSession) map[string]engine.HubTarget {
	if len(p.Hubs) == 0 || sess.parts == nil {
		return nil
	}
	out := map[string]engine.HubTarget{}
	for _, h := range p.Hubs {
		t := sess.parts[h.Name]
		t.Estimate = o.estimate
		if h.Tier != "" {
			if q, err := hubapi.TierQuotas(h.Tier, h.Units); err == nil {
				t.Estimate = q
			}
		}
		out[h.Name] = t
	}
	return out
}

// writeHubsText writes each hub's part of a plan with hubs: its devices, and per wave that runs on
// it the wave's devices, changes and estimate there.
func writeHubsText(w *errWriter, pv *engine.Preview) {
	for _, h := range pv.Hubs {
		w.printf("\nHub %s (%s): fleet %s, %d in no wave; estimate %s\n", h.Hub, h.Tier, plural(h.FleetDevices, "device"),
			h.Untargeted, estimateText(h.Estimate))
		for _, wv := range h.Waves {
			w.printf("  wave %s: %s; %s\n", wv.Name, devicesText(wv), estimateText(wv.Estimate))
			for _, d := range wv.Diff {
				w.printf("    changes: %s%s\n", diffText(d), estimated(wv))
			}
		}
	}
}

// writeHubsMarkdown writes the parts of a plan with hubs as a table: a row per hub and wave.
func writeHubsMarkdown(w *errWriter, pv *engine.Preview) {
	if len(pv.Hubs) == 0 {
		return
	}
	w.printf("\n| Hub | Tier | Wave | Devices | Estimate |\n|---|---|---|---|---|\n")
	for _, h := range pv.Hubs {
		for _, wv := range h.Waves {
			w.printf("| %s | %s | %s | %s | %s |\n", mdCell(h.Hub), mdCell(h.Tier), mdCell(wv.Name), mdCell(devicesText(wv)),
				mdCell(estimateText(wv.Estimate)))
		}
	}
}

// findingWhere says where a finding was made: its hub and its wave, "" when neither.
func findingWhere(f engine.Finding, wave func(string) string) string {
	var parts []string
	if f.Hub != "" {
		parts = append(parts, "hub "+f.Hub)
	}
	if f.Wave != "" {
		parts = append(parts, wave(f.Wave))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + ": "
}
