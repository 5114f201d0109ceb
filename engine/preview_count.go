package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// rows runs q and returns every row, counting each page as one query.
func (pv *previewer) rows(ctx context.Context, q string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	pager := pv.Hub.Query(ctx, q, pageSize(pv.Quotas))
	for pager.More() {
		page, err := pager.NextPage(ctx)
		pv.out.Queries++ // a page is a query request, answered or not
		if err != nil {
			if len(q) > 160 {
				q = q[:160] + "..."
			}
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		out = append(out, page...)
	}
	return out, nil
}

func where(c query.Expr) string {
	if _, all := c.(query.All); all || c == nil {
		return ""
	}
	return " WHERE " + query.Format(c)
}

// count runs one COUNT query.
func (pv *previewer) count(ctx context.Context, c query.Expr) (int, error) {
	rows, err := pv.rows(ctx, "SELECT COUNT() AS n FROM devices"+where(c))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, raw := range rows {
		k, err := countRow(raw)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// falseExpr selects nothing.
var falseExpr = query.Or()

// takenBefore is the condition that selects, among the devices of wave i's fleet AND target, those an
// earlier wave without percent takes: OR of their targets (nil when there is none). It is positive, so
// a device lacking a property it tests is not counted as taken, as apply does not take it either.
func (pv *previewer) takenBefore(i int) query.Expr {
	var parts []query.Expr
	for k := 0; k < i; k++ {
		if pv.p.Waves[k].Percent >= 100 {
			parts = append(parts, pv.targets[k])
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return query.Or(parts...)
}

// scale turns a count over a wave's candidates into one over its devices (the percent sample is a
// uniform hash, so shares carry over).
func scale(n, devices, candidates int) int {
	if candidates <= 0 || devices == candidates {
		return min(n, devices)
	}
	return int(math.Round(float64(n) * float64(devices) / float64(candidates)))
}

// overlapsSample reports whether an earlier percent wave may have taken some of wave i's candidates;
// when none can, wave i's count needs no ids.
func (pv *previewer) overlapsSample(ctx context.Context, i int) bool {
	pv.overlap[i] = map[int]int{}
	overlaps := false
	for k := 0; k < i; k++ {
		if pv.p.Waves[k].Percent >= 100 {
			continue
		}
		n, err := pv.count(ctx, query.And(pv.p.Condition(i), pv.conds[k]))
		if err != nil {
			return true // the listing that follows reports the error
		}
		pv.overlap[i][k] = n
		overlaps = overlaps || n > 0
	}
	return overlaps
}

// excludeByID prepares wave i's counts to subtract, by deviceId IN [...] conditions, the samples that
// earlier percent waves took of its candidates. That is far cheaper than listing wave i when the
// samples are small next to it. It reports false, leaving wave i to be listed, when a sample is not
// known by id, the conditions leave no room for ids, or the queries would exceed the budget.
func (pv *previewer) excludeByID(i, paths int) bool {
	room := pv.room(i)
	for _, k := range slices.Sorted(maps.Keys(pv.overlap[i])) {
		if pv.overlap[i][k] > 0 && !pv.listed[k] {
			return false
		}
	}
	if room < 500 {
		return false
	}
	var excl []query.Expr
	for _, k := range slices.Sorted(maps.Keys(pv.overlap[i])) {
		if pv.overlap[i][k] == 0 {
			continue
		}
		excl = append(excl, inChunks(pv.sets[k], room)...)
	}
	if pv.out.Queries+len(excl)*(3+paths) > pv.MaxQueries {
		return false
	}
	pv.excl[i] = excl
	return true
}

// room is how many characters of a query's condition a deviceId IN [...] part of wave i may take.
func (pv *previewer) room(i int) int {
	room := maxQuery(pv.Quotas) - len(query.Format(pv.p.Condition(i))) - 200
	if v := pv.p.Waves[i].Verify; v != nil {
		room -= len(v.Condition) + 10
	}
	return room
}

// inChunks splits ids into deviceId IN [...] conditions of at most room characters each.
func inChunks(ids []string, room int) []query.Expr {
	var out []query.Expr
	for _, rg := range query.SplitIn("deviceId", ids, room) {
		out = append(out, query.In("deviceId", ids[rg[0]:rg[1]]))
	}
	return out
}

// includeByID prepares the counts and twin values of a wave listed by id to be read over its ids,
// in deviceId IN [...] chunks: exact, and cheaper than listing again (a chunk holds several pages'
// worth of ids). It reports false when the queries would exceed the budget.
func (pv *previewer) includeByID(i, paths int, ids []string) bool {
	room := pv.room(i)
	if room < 500 {
		return false
	}
	incl := inChunks(ids, room)
	if pv.out.Queries+len(incl)*(2+paths) > pv.MaxQueries {
		return false
	}
	pv.incl[i] = incl
	return true
}

// countScaled is countLess scaled from the wave's candidates (base) to its devices.
func (pv *previewer) countScaled(ctx context.Context, i int, c query.Expr, devices, base int) (*int, error) {
	n, err := pv.countLess(ctx, i, c)
	if err != nil {
		return nil, err
	}
	n = scale(n, devices, base)
	return &n, nil
}

// countLess counts what c selects of wave i: over its ids when it was listed, or less what its
// exclusions (earlier samples) take.
func (pv *previewer) countLess(ctx context.Context, i int, c query.Expr) (int, error) {
	if incl, ok := pv.incl[i]; ok {
		n := 0
		for _, in := range incl {
			m, err := pv.count(ctx, query.And(c, in))
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	}
	n, err := pv.count(ctx, c)
	if err != nil {
		return 0, err
	}
	for _, ex := range pv.excl[i] {
		m, err := pv.count(ctx, query.And(c, ex))
		if err != nil {
			return 0, err
		}
		n -= m
	}
	return n, nil
}

// estimateSample estimates a wave's count when its ids were not listed: its candidates, less the share
// of them each earlier percent wave took of its own candidates, times its own percent.
func (pv *previewer) estimateSample(i, candidates int) int {
	f := float64(candidates)
	for k, n := range pv.overlap[i] {
		if w := pv.out.Waves[k]; w.Candidates > 0 {
			f -= float64(n) * float64(w.Devices) / float64(w.Candidates)
		}
	}
	return int(math.Round(max(0, f) * math.Min(pv.p.Waves[i].Percent, 100) / 100))
}

// list resolves wave i as apply does, with apply's resolver: it pages
// through the ids its composed condition selects and keeps those no earlier wave took that fall in its
// sample. It refuses with ErrQueryBudget, before sending anything, when the pages would exceed the
// budget.
func (pv *previewer) list(ctx context.Context, i, candidates int) ([]string, error) {
	pw := pv.p.Waves[i]
	pages := max(1, (candidates+pageSize(pv.Quotas)-1)/pageSize(pv.Quotas))
	if pv.out.Queries+pages > pv.MaxQueries {
		return nil, fmt.Errorf("wave %s needs %d pages of ids: %w", pw.Name, pages, ErrQueryBudget)
	}
	ids, err := pv.rv.resolve(ctx, i)
	pv.out.Queries += pages
	if err != nil {
		return nil, err
	}
	pv.sets[i] = ids
	pv.listed[i] = true
	return ids, nil
}

// sample reads a few ids of a wave counted without listing: devices its composed condition selects
// that no earlier listed sample took, in the wave's own sample (the hub's order is its own, so the ids
// are sorted).
func (pv *previewer) sample(ctx context.Context, i int) ([]string, error) {
	ids := []string{}
	pw := pv.p.Waves[i]
	overlapped := false
	for _, n := range pv.overlap[i] {
		overlapped = overlapped || n > 0
	}
	if !overlapped && pw.Percent >= 100 {
		raws, err := pv.rows(ctx, fmt.Sprintf("SELECT TOP %d deviceId FROM devices%s", pv.SampleSize, where(pv.p.Condition(i))))
		if err != nil {
			return nil, err
		}
		for _, raw := range raws {
			id, err := rowID(raw)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return ids, nil
	}
	// Earlier samples took some of what the condition selects, or the wave takes a sample of it: skip
	// the ids it does not take, as apply would, reading at most a few pages (the sample may then be
	// short).
	_, taken, err := pv.rv.query(i)
	if err != nil {
		return nil, err
	}
	pager := pv.Hub.Query(ctx, "SELECT deviceId FROM devices"+where(pv.p.Condition(i)), pageSize(pv.Quotas))
	for pages := 0; pages < 3 && len(ids) < pv.SampleSize && pager.More(); pages++ {
		page, err := pager.NextPage(ctx)
		pv.out.Queries++
		if err != nil {
			return nil, err
		}
		for _, raw := range page {
			id, err := rowID(raw)
			if err != nil {
				return nil, err
			}
			if !taken.has(id) && InSample(pv.p.Name, id, pw.Percent) && len(ids) < pv.SampleSize {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// batches splits a wave's devices as apply would: BatchRanges, then SplitIn per batch for the jobs.
// Without the ids, the jobs of a batch are estimated from the sample's id lengths.
func (pv *previewer) batches(ids []string, n int, sample []string, b plan.Batch) []BatchPreview {
	out := []BatchPreview{}
	maxCond := maxQuery(pv.Quotas)
	avg := 12.0
	if len(sample) > 0 {
		total := 0
		for _, id := range sample {
			total += len(query.Quote(id)) + 1
		}
		avg = float64(total) / float64(len(sample))
	}
	for _, rg := range BatchRanges(n, b) {
		bp := BatchPreview{Devices: rg[1] - rg[0]}
		if ids != nil {
			bp.Jobs = len(SplitIn(ids[rg[0]:rg[1]], maxCond))
		} else {
			bp.Jobs = max(1, int(math.Ceil((float64(bp.Devices)*avg+14)/float64(maxCond))))
		}
		out = append(out, bp)
	}
	return out
}
