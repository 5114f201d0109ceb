package hubset

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// Query runs a device query on the hubs it concerns (see the package documentation) and pages
// through the merged rows, pageSize at a time. The rows of every hub are read before the first page
// is returned.
func (s *Set) Query(ctx context.Context, text string, pageSize int) *hubapi.Pager {
	q, err := query.Parse(text)
	if err != nil {
		return errPager(fmt.Errorf("hubset: %w", err))
	}
	parts, ok, err := split(q.Where())
	if err != nil {
		return errPager(err)
	}
	texts := map[string]string{}
	if ok {
		for name, where := range parts {
			if _, known := s.hubs[name]; !known {
				return errPager(fmt.Errorf("hubset: the query names devices of hub %q, which the plan does not name", name))
			}
			texts[name] = q.WithWhere(where).String()
		}
	} else {
		for _, name := range s.names {
			texts[name] = text
		}
	}
	return s.merged(ctx, q, texts, pageSize, func(h engine.Hub, t string) *hubapi.Pager { return h.Query(ctx, t, pageSize) })
}

// DeviceJobs pages through the per-device records of the job's parts on every hub of the view, with
// qualified device ids.
func (s *Set) DeviceJobs(ctx context.Context, jobID, where string, pageSize int) *hubapi.Pager {
	texts := map[string]string{}
	for _, name := range s.names {
		texts[name] = where
	}
	return s.merged(ctx, nil, texts, pageSize, func(h engine.Hub, w string) *hubapi.Pager { return h.DeviceJobs(ctx, jobID, w, pageSize) })
}

// merged runs open(hub, texts[hub]) on every hub of texts concurrently, collects their rows
// (qualified; summed when q aggregates) and pages through them.
func (s *Set) merged(ctx context.Context, q *query.Query, texts map[string]string, pageSize int, open func(engine.Hub, string) *hubapi.Pager) *hubapi.Pager {
	names := sortedKeys(texts)
	rows := make([][]json.RawMessage, len(names))
	var all []json.RawMessage
	var err error
	loaded := false
	load := func() error {
		err := s.each(names, func(name string, h engine.Hub) error {
			i := indexOf(names, name)
			return open(h, texts[name]).Each(ctx, func(raw json.RawMessage) error {
				r, err := qualify(name, raw)
				rows[i] = append(rows[i], r)
				return err
			})
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			all = append(all, r...)
		}
		if q != nil && q.Aggregate() {
			all, err = aggregate(q, all)
		}
		if q != nil && q.Top() >= 0 && len(all) > q.Top() {
			all = all[:q.Top()]
		}
		return err
	}
	if pageSize <= 0 {
		pageSize = hubapi.MaxPageSize
	}
	return hubapi.PagerFunc(func(ctx context.Context) ([]json.RawMessage, bool, error) {
		if !loaded {
			loaded = true
			if err = load(); err != nil {
				return nil, false, err
			}
		}
		n := min(pageSize, len(all))
		page := all[:n]
		all = all[n:]
		return page, len(all) > 0, nil
	})
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

func errPager(err error) *hubapi.Pager {
	return hubapi.PagerFunc(func(context.Context) ([]json.RawMessage, bool, error) { return nil, false, err })
}

// qualify prefixes the deviceId of a row (a twin, a projection, a job record) with its hub; rows
// without one (aggregates) are returned as they are.
func qualify(hub string, raw json.RawMessage) (json.RawMessage, error) {
	if !strings.Contains(string(raw), `"deviceId"`) {
		return raw, nil
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return raw, nil // not an object: nothing to qualify
	}
	var id string
	if err := json.Unmarshal(row["deviceId"], &id); err != nil || id == "" {
		return raw, nil
	}
	b, _ := json.Marshal(plan.QualifyID(hub, id))
	row["deviceId"] = b
	return json.Marshal(row)
}

// split finds the `deviceId IN [...]` of qualified ids at the top of a condition (alone, or one part
// of a top-level AND) and gives each hub's condition with the hub's own ids; ok is false when there is
// none, and the query concerns every hub. Qualified and plain ids mixed in one list are an error.
func split(where query.Expr) (map[string]query.Expr, bool, error) {
	parts := []query.Expr{where}
	if l, ok := where.(query.Logical); ok && l.Op == query.OpAnd {
		parts = l.Parts
	}
	for i, p := range parts {
		byHub, ok, err := splitIn(p)
		if err != nil || !ok {
			if err != nil {
				return nil, false, err
			}
			continue
		}
		out := map[string]query.Expr{}
		for hub, ids := range byHub {
			rest := append(append(append([]query.Expr(nil), parts[:i]...), query.In("deviceId", ids)), parts[i+1:]...)
			out[hub] = query.And(rest...)
		}
		return out, true, nil
	}
	return nil, false, nil
}

// splitIn splits `deviceId IN [...]` by the hubs of its qualified ids.
func splitIn(e query.Expr) (map[string][]string, bool, error) {
	in, ok := e.(query.InList)
	if !ok || in.Negated {
		return nil, false, nil
	}
	p, ok := in.X.(query.Path)
	if !ok || len(p.Segments) != 1 || !strings.EqualFold(p.Segments[0], "deviceId") {
		return nil, false, nil
	}
	out := map[string][]string{}
	plain := 0
	for _, v := range in.Values {
		s, ok := v.(query.String)
		if !ok {
			return nil, false, nil
		}
		hub, id, ok := plan.SplitID(s.Value)
		if !ok {
			plain++
			continue
		}
		out[hub] = append(out[hub], id)
	}
	switch {
	case plain == len(in.Values):
		return nil, false, nil
	case plain > 0:
		return nil, false, fmt.Errorf("hubset: a deviceId IN list mixes ids with and without a hub")
	}
	return out, true, nil
}

// aggregate sums the per-hub rows of an aggregate query: rows with the same group values are one
// row, their COUNT and SUM values added, MIN and MAX kept. AVG cannot be combined from per-hub rows.
func aggregate(q *query.Query, rows []json.RawMessage) ([]json.RawMessage, error) {
	funcs := map[string]string{}
	for _, it := range q.Select() {
		if it.Func == "" {
			continue
		}
		if it.Alias == "" || it.Func == "AVG" {
			return nil, fmt.Errorf("hubset: %s over several hubs needs AS and cannot be AVG", it)
		}
		funcs[it.Alias] = it.Func
	}
	type group struct {
		row map[string]any
	}
	var order []string
	groups := map[string]*group{}
	for _, raw := range rows {
		var row map[string]any
		if err := json.Unmarshal(raw, &row); err != nil {
			return nil, fmt.Errorf("hubset: aggregate row %s: %w", raw, err)
		}
		keyRow := map[string]any{}
		for k, v := range row {
			if funcs[k] == "" {
				keyRow[k] = v
			}
		}
		kb, _ := json.Marshal(keyRow)
		g, ok := groups[string(kb)]
		if !ok {
			groups[string(kb)] = &group{row: row}
			order = append(order, string(kb))
			continue
		}
		for alias, fn := range funcs {
			a, _ := g.row[alias].(float64)
			b, okb := row[alias].(float64)
			if !okb {
				continue
			}
			switch fn {
			case "MIN":
				g.row[alias] = min(a, b)
			case "MAX":
				g.row[alias] = max(a, b)
			default:
				g.row[alias] = a + b
			}
		}
	}
	out := make([]json.RawMessage, 0, len(order))
	for _, k := range order {
		b, err := json.Marshal(groups[k].row)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// splitCondition splits a job's condition by hub: each hub's condition with its own ids. A job over
// several hubs must name its devices by qualified id, as every job the engine makes does.
func (s *Set) splitCondition(cond string) (map[string]string, error) {
	e, err := query.ParseCondition(cond)
	if err != nil {
		return nil, fmt.Errorf("hubset: %w", err)
	}
	parts, ok, err := split(e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("hubset: a job over several hubs needs a condition deviceId IN [...] of ids qualified with their hub")
	}
	out := map[string]string{}
	for name, where := range parts {
		if _, known := s.hubs[name]; !known {
			return nil, fmt.Errorf("hubset: the job names devices of hub %q, which the plan does not name", name)
		}
		out[name] = query.Format(where)
	}
	return out, nil
}
