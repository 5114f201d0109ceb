package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// patchPaths lists the leaf paths of a twin update, sorted by their query text (the query package
// escapes segments that need it). A twin patch merges objects, so only its leaves change values.
func patchPaths(tu *plan.TwinUpdate) []query.Path {
	if tu == nil {
		return nil
	}
	var out []query.Path
	var walk func(prefix []string, m map[string]any)
	walk = func(prefix []string, m map[string]any) {
		for k, v := range m {
			segs := append(slices.Clip(prefix), k)
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(segs, sub)
				continue
			}
			out = append(out, query.Path{Segments: segs})
		}
	}
	walk([]string{"tags"}, tu.Tags)
	walk([]string{"properties", "desired"}, tu.Desired)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// patchValue returns the new value at path (one of patchPaths) as canonical JSON.
func patchValue(tu *plan.TwinUpdate, path query.Path) string {
	var cur any
	segs := path.Segments
	switch {
	case segs[0] == "tags":
		cur, segs = tu.Tags, segs[1:]
	default:
		cur, segs = tu.Desired, segs[2:]
	}
	for _, s := range segs {
		m, _ := cur.(map[string]any)
		cur = m[s]
	}
	return canonical(cur)
}

// canonical renders a value as JSON with numbers as written, so that the plan's 60 and the hub's 60
// compare equal.
func canonical(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return canonicalRaw(b)
}

func canonicalRaw(raw json.RawMessage) string {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func (pv *previewer) tu(i int) *plan.TwinUpdate { return pv.p.Waves[i].Action.TwinUpdate }

// diffGroups counts current values per patched path with GROUP BY queries over the wave's candidates
// (less earlier samples, or over its own ids, when those are known); for a wave whose sample is not
// known by id the counts are scaled to its devices. Devices lacking the path are read from the group
// row that has no "v": the hub documents GROUP BY but not how it groups an undefined value, so this
// follows Cosmos DB and the emulator (a choice, unconfirmed on a real hub).
func (pv *previewer) diffGroups(ctx context.Context, i int, paths []query.Path, devices, candidates int) ([]PathDiff, error) {
	var out []PathDiff
	for _, p := range paths {
		path := p.String()
		counts := map[string]int{}
		group := func(c query.Expr, sign int) error {
			raws, err := pv.rows(ctx, fmt.Sprintf("SELECT %s AS v, COUNT() AS n FROM devices%s GROUP BY %s", path, where(c), path))
			if err != nil {
				return err
			}
			for _, raw := range raws {
				var row map[string]json.RawMessage
				if err := json.Unmarshal(raw, &row); err != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				var num json.Number
				if json.Unmarshal(row["n"], &num) != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				n, err := num.Int64()
				if err != nil {
					return fmt.Errorf("unexpected group row %s", raw)
				}
				val := ""
				if v, ok := row["v"]; ok {
					val = canonicalRaw(v)
				}
				counts[val] += sign * int(n)
			}
			return nil
		}
		if incl, ok := pv.incl[i]; ok {
			for _, in := range incl {
				if err := group(query.And(pv.p.Condition(i), in), 1); err != nil {
					return nil, err
				}
			}
		} else if candidates > 0 {
			if err := group(pv.p.Condition(i), 1); err != nil {
				return nil, err
			}
			for _, ex := range pv.excl[i] {
				if err := group(query.And(pv.p.Condition(i), ex), -1); err != nil {
					return nil, err
				}
			}
		}
		for v, n := range counts {
			counts[v] = scale(n, devices, candidates)
		}
		out = append(out, makeDiff(path, patchValue(pv.tu(i), p), counts))
	}
	return out, nil
}

func makeDiff(path, to string, counts map[string]int) PathDiff {
	d := PathDiff{Path: path, To: to, From: []ValueCount{}}
	for v, n := range counts {
		if n <= 0 {
			continue
		}
		if v == to {
			d.NoOps += n
			continue
		}
		d.From = append(d.From, ValueCount{Value: v, Devices: n})
	}
	sort.Slice(d.From, func(a, b int) bool {
		if d.From[a].Devices != d.From[b].Devices {
			return d.From[a].Devices > d.From[b].Devices
		}
		return d.From[a].Value < d.From[b].Value
	})
	return d
}
