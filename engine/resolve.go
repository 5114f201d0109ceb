package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// queryByID runs prefix + `deviceId IN [...]` over ids, in as few queries as the hub's query length
// allows, n of them at once, and calls row on every row they return (concurrently when n > 1).
func (r *runner) queryByID(ctx context.Context, prefix string, ids []string, n int, row func(json.RawMessage) error) error {
	chunks := SplitIn(ids, maxQuery(r.Quotas)-len(prefix))
	return forEach(ctx, chunks, max(1, min(n, len(chunks))), func(ctx context.Context, rg [2]int) error {
		return r.Hub.Query(ctx, prefix+InCondition(ids[rg[0]:rg[1]]), pageSize(r.Quotas)).Each(ctx, row)
	})
}

// pageSize is the query page size to ask of a hub with quotas q: its own, or IoT Hub's default when
// q leaves it zero.
func pageSize(q hubapi.Quotas) int {
	if n := q.MaxPageSize; n > 0 {
		return n
	}
	return hubapi.MaxPageSize
}

// maxQuery is the longest query a hub with quotas q accepts: its own limit, or IoT Hub's default
// when q leaves it zero.
func maxQuery(q hubapi.Quotas) int {
	if n := q.MaxQueryLength; n > 0 {
		return n
	}
	return hubapi.MaxQueryLength
}

// resolve starts a wave: it selects the wave's devices once and stores them (fleet AND target, minus
// every device an earlier wave took, then the wave's stable percent sample), unless that ran ahead.
func (r *runner) resolve(ctx context.Context, wi int) error {
	w := &r.st.Waves[wi]
	if err := r.awaitAhead(wi, -1); err != nil {
		return err
	}
	if !w.Resolved {
		if err := r.resolveDevices(ctx, wi); err != nil {
			return err
		}
	}
	var events []Event
	if r.p.Waves[wi].Approval {
		if a, ok := r.approval(w.Name); ok {
			events = append(events, Event{Type: EventApproved, Wave: wi, By: a.By, At: a.At, Reason: a.Reason})
		}
	}
	if err := r.commit(append(events, r.st.StartWave(wi, r.now())...)); err != nil {
		return err
	}
	return nil
}

// resolveDevices resolves and stores a wave's devices and batches without starting the wave.
func (r *runner) resolveDevices(ctx context.Context, wi int) error {
	ids, err := r.resolver().resolve(ctx, wi)
	if err != nil {
		return err
	}
	return r.storeResolved(wi, ids)
}

// resolver resolves waves over the runner's stored device sets.
func (r *runner) resolver() resolver {
	return resolver{p: r.p, hub: r.Hub, quotas: r.Quotas, sets: r.waveDevices}
}

// resolver selects a wave's devices, the one way apply and the preview share (as a plan and its apply
// walk the same nodes): fleet AND target AND NOT (earlier waves' targets), less every device an
// earlier wave took, then the wave's stable percent sample. Its inputs are the plan, the hub and sets,
// the devices of earlier waves: the store's (cached) in apply, the preview's own in `rollout plan`.
type resolver struct {
	p      *plan.Plan
	hub    Hub
	quotas hubapi.Quotas
	sets   func(wave int) ([]string, error)
}

// resolve lists wave wi's devices, sorted.
func (rv resolver) resolve(ctx context.Context, wi int) ([]string, error) {
	qs, err := rv.queries(wi)
	if err != nil {
		return nil, err
	}
	return rv.listAll(ctx, wi, qs)
}

// hubQuery is the query selecting a wave's candidates on one of its hubs ("" in a plan without hubs),
// with the devices earlier waves took.
type hubQuery struct {
	hub   string
	q     string
	taken taken
}

// queries gives the queries that select wave wi's candidates: one, or in a plan with hubs one per
// hub of the wave, each with that hub's condition (plan.ConditionOn). It reads the stored device sets,
// so it runs on the caller's goroutine; listAll may then run in the background.
func (rv resolver) queries(wi int) ([]hubQuery, error) {
	hubs := rv.p.Waves[wi].Hubs
	if len(hubs) == 0 {
		hubs = []string{""}
	}
	out := make([]hubQuery, len(hubs))
	for i, h := range hubs {
		q, t, err := rv.queryOn(wi, h)
		if err != nil {
			return nil, err
		}
		out[i] = hubQuery{hub: h, q: q, taken: t}
	}
	return out, nil
}

// listAll runs the queries concurrently, each on its hub's view, and merges their devices, sorted.
func (rv resolver) listAll(ctx context.Context, wi int, qs []hubQuery) ([]string, error) {
	if len(qs) == 1 && qs[0].hub == "" {
		return rv.list(ctx, wi, qs[0].q, qs[0].taken)
	}
	lists := make([][]string, len(qs))
	err := forEach(ctx, hubRanges(len(qs)), len(qs), func(ctx context.Context, rg [2]int) error {
		hq := qs[rg[0]]
		on := rv
		on.hub = hubFor(rv.hub, hq.hub)
		var err error
		lists[rg[0]], err = on.list(ctx, wi, hq.q, hq.taken)
		return err
	})
	if err != nil {
		return nil, err
	}
	return interleave(lists), nil
}

// interleave merges the hubs' sorted device lists so that every prefix holds each hub's devices in
// proportion to its share of the wave: a batch then has a part on every hub, and the hubs work side
// by side instead of one after the other. The order is deterministic (a wave's devices are resolved
// once and stored in it); a wave's list is then not sorted, which taken allows for.
func interleave(lists [][]string) []string {
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	out := make([]string, 0, total)
	next := make([]int, len(lists))
	for len(out) < total {
		best := -1
		for i, l := range lists {
			// The hub whose next device is due first: the smallest (next+½)/len, compared without
			// division.
			if next[i] < len(l) && (best < 0 || (2*next[i]+1)*len(lists[best]) < (2*next[best]+1)*len(l)) {
				best = i
			}
		}
		out = append(out, lists[best][next[best]])
		next[best]++
	}
	return out
}

// hubRanges gives one range per hub, for forEach.
func hubRanges(n int) [][2]int {
	out := make([][2]int, n)
	for i := range out {
		out[i] = [2]int{i, i + 1}
	}
	return out
}

// taken holds the sorted device lists of earlier waves; it answers membership by binary search, so
// resolving a wave allocates nothing per device already taken.
type taken [][]string

func (t taken) has(id string) bool {
	for _, ids := range t {
		if i := sort.SearchStrings(ids, id); i < len(ids) && ids[i] == id {
			return true
		}
	}
	return false
}

// query gives the query that selects a wave's candidates and the devices earlier waves took.
func (rv resolver) query(wi int) (string, taken, error) { return rv.queryOn(wi, "") }

// queryOn is query on one of the wave's hubs ("": a plan without hubs).
func (rv resolver) queryOn(wi int, hub string) (string, taken, error) {
	// A wave selects fleet AND target AND NOT (earlier waves' targets), the plan's documented meaning
	// of disjoint waves and what `rollout plan` previews; it also spares a "*" wave reading the whole
	// fleet. plan.Condition guards the NOT against IoT Hub's three-valued logic, so a device lacking a
	// property an earlier target tests is still selected. Every earlier wave's stored devices are
	// subtracted as well (samples, which no condition can name, and any device a lagging query
	// showed differently), so no device is ever taken twice.
	q := "SELECT deviceId FROM devices"
	if c := query.Format(rv.p.ConditionOn(wi, hub)); c != "*" {
		q += " WHERE " + c
	}
	var t taken
	for i := 0; i < wi; i++ {
		ids, err := rv.sets(i)
		if err != nil {
			return "", nil, err
		}
		if !sort.StringsAreSorted(ids) {
			// A wave over several hubs stores its devices interleaved by hub (see interleave).
			ids = slices.Clone(ids)
			sort.Strings(ids)
		}
		t = append(t, ids)
	}
	return q, t, nil
}

// list runs q and keeps the devices not taken that fall in wave wi's sample, sorted. It only reads
// the hub and its arguments, so it may run in the background.
func (rv resolver) list(ctx context.Context, wi int, q string, t taken) ([]string, error) {
	pw := rv.p.Waves[wi]
	var ids []string
	err := rv.hub.Query(ctx, q, pageSize(rv.quotas)).Each(ctx, func(raw json.RawMessage) error {
		id, err := rowID(raw)
		if err == nil && !t.has(id) && InSample(rv.p.Name, id, pw.Percent) {
			ids = append(ids, id)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("resolve wave %s: %w", pw.Name, err)
	}
	sort.Strings(ids)
	return slices.Compact(ids), nil
}

// storeResolved stores a wave's devices and splits them into batches.
func (r *runner) storeResolved(wi int, ids []string) error {
	r.st.ResolveWave(wi, len(ids), BatchRanges(len(ids), r.p.Waves[wi].Batch))
	r.devices[wi] = ids
	return r.Store.Update(func(tx *Tx) error {
		if err := tx.PutDevices(wi, ids); err != nil {
			return err
		}
		r.st.Updated = r.now().UTC()
		return tx.PutState(r.st)
	})
}

func (r *runner) waveDevices(wi int) ([]string, error) {
	if ids, ok := r.devices[wi]; ok {
		return ids, nil
	}
	var ids []string
	err := r.Store.View(func(tx *Tx) error {
		var err error
		ids, err = tx.Devices(wi)
		return err
	})
	if err == nil {
		r.devices[wi] = ids
	}
	return ids, err
}

func rowID(raw json.RawMessage) (string, error) {
	var row struct {
		DeviceID string `json:"deviceId"`
	}
	if err := json.Unmarshal(raw, &row); err != nil || row.DeviceID == "" {
		return "", fmt.Errorf("unexpected query row %s", raw)
	}
	return row.DeviceID, nil
}
