package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// FindingConfiguration is the code of a finding about an IoT Hub automatic device configuration that
// targets a wave's devices and writes a desired property the plan patches: the hub writes its value
// back at its next run, silently undoing the rollout.
const FindingConfiguration = "configuration-conflict"

// configurationLister is what a Hub offers when it can list automatic device configurations, as
// *hubapi.Client does; the preview looks for conflicting configurations only on such a hub.
type configurationLister interface {
	ListConfigurations(ctx context.Context, top int) ([]hubapi.Configuration, error)
}

// configurationFindings adds a finding for each wave and configuration whose content writes a desired
// path the plan patches and whose target condition selects some of the wave's devices (counted as the
// wave's own counts are: its composed condition, less the samples earlier waves took). A configuration whose condition rollout cannot read is reported as one that may. A hub that
// cannot list its configurations gets a finding saying so, never an error: the preview stands without
// them.
func (pv *previewer) configurationFindings(ctx context.Context) error {
	lister, ok := pv.Hub.(configurationLister)
	if !ok || pv.out.Kind != KindTwinUpdate {
		return nil
	}
	configs, err := lister.ListConfigurations(ctx, 0)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pv.out.Findings = append(pv.out.Findings, Finding{Severity: plan.Warning, Code: FindingConfiguration,
			Message: fmt.Sprintf("automatic device configurations could not be listed, so none that would undo the rollout is known: %v", err)})
		return nil
	}
	for i, w := range pv.p.Waves {
		tu := w.Action.TwinUpdate
		if tu == nil || len(tu.Desired) == 0 {
			continue
		}
		patched := leafPaths(tu.Desired, nil)
		for _, c := range configs {
			paths := conflictingPaths(&c, patched)
			if len(paths) == 0 {
				continue
			}
			if err := pv.configurationFinding(ctx, i, &c, paths); err != nil {
				return err
			}
		}
	}
	return nil
}

// configurationFinding counts the devices of wave i that configuration c targets and adds the
// finding when there are any; paths are the desired paths both write.
func (pv *previewer) configurationFinding(ctx context.Context, i int, c *hubapi.Configuration, paths []string) error {
	wave := pv.p.Waves[i].Name
	add := func(format string, args ...any) {
		pv.out.Findings = append(pv.out.Findings, Finding{Severity: plan.Warning, Code: FindingConfiguration, Wave: wave,
			Message: fmt.Sprintf(format, args...)})
	}
	what := fmt.Sprintf("automatic device configuration %q (priority %d) writes %s, which the plan patches", c.ID, c.Priority, strings.Join(paths, ", "))
	if strings.TrimSpace(c.TargetCondition) == "" {
		return nil // a configuration without a target condition targets no device
	}
	target, err := parseOrAll(c.TargetCondition)
	if err != nil {
		add("%s, and its target condition %q cannot be read here, so it may target this wave's devices: IoT Hub would write its values back at the configuration's next run, undoing the rollout", what, c.TargetCondition)
		return nil
	}
	n, err := pv.countLess(ctx, i, query.And(pv.p.Condition(i), target))
	if err != nil {
		return fmt.Errorf("count the devices configuration %s targets in wave %s: %w", c.ID, wave, err)
	}
	if n > 0 {
		add("%s, and targets %s of this wave: IoT Hub writes its values back at the configuration's next run, undoing the rollout; remove them from its target condition or its content", what, plural(n, "device"))
	}
	return nil
}

// leafPaths lists the desired paths a patch writes, dotted under properties.desired, in sorted order.
func leafPaths(m map[string]any, prefix []string) [][]string {
	var out [][]string
	for k, v := range m {
		p := append(slices.Clone(prefix), k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, leafPaths(sub, p)...)
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out
}

// conflictingPaths lists, as written in c's content, the device content paths under properties.desired
// that are, contain or lie inside a path of patched.
func conflictingPaths(c *hubapi.Configuration, patched [][]string) []string {
	if c.Content == nil {
		return nil
	}
	var out []string
	for key := range c.Content.DeviceContent {
		rest, ok := strings.CutPrefix(key, "properties.desired.")
		if !ok {
			continue
		}
		segs := strings.Split(rest, ".")
		if slices.ContainsFunc(patched, func(p []string) bool {
			n := min(len(p), len(segs))
			return slices.Equal(p[:n], segs[:n])
		}) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}
