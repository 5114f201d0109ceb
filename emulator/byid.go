package emulator

import (
	"iter"
	"slices"
	"strings"

	"github.com/iot-rollout/rollout/query"
)

// jobTargets returns the registered devices a job's condition selects now. A condition that is exactly
// `deviceId IN [...]` (every job rollout creates) finds its devices by id, in the list's order, rather
// than by evaluating it against every twin: a rollout over a million devices creates about 1,500
// such jobs. Any other condition selects in creation order.
func (s *store) jobTargets(cond string) ([]*device, error) {
	e, err := parseCondition(cond)
	if err != nil {
		return nil, err
	}
	m := query.Compile(e)
	if ids, ok := idsOf(e); ok {
		var out []*device
		for _, d := range s.selectByID(ids) {
			if m.Match((*twinDoc)(d)) {
				out = append(out, d)
			}
		}
		return out, nil
	}
	return s.selectWhere(m), nil
}

// idsOf returns the device ids a condition restricts its devices to: a deviceId IN [...] list, alone
// or as a part of its top-level AND. Queries and jobs with such a condition look their devices up by
// id and evaluate the condition on those alone.
func idsOf(e query.Expr) ([]string, bool) {
	if ids, ok := idList(e); ok {
		return ids, true
	}
	if l, ok := e.(query.Logical); ok && l.Op == query.OpAnd {
		for _, p := range l.Parts {
			if ids, ok := idList(p); ok {
				return ids, true
			}
		}
	}
	return nil, false
}

// idList returns the ids of a condition that is exactly deviceId IN ['a', 'b', ...].
func idList(e query.Expr) ([]string, bool) {
	in, ok := e.(query.InList)
	if !ok || in.Negated {
		return nil, false
	}
	p, ok := in.X.(query.Path)
	if !ok || len(p.Segments) != 1 || !strings.EqualFold(p.Segments[0], "deviceId") {
		return nil, false
	}
	ids := make([]string, len(in.Values))
	for i, v := range in.Values {
		s, ok := v.(query.String)
		if !ok {
			return nil, false
		}
		ids[i] = s.Value
	}
	return ids, true
}

// selectByID returns the registered devices among ids, each once, in the order of ids.
func (s *store) selectByID(ids []string) []*device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*device, 0, len(ids))
	seen := make(map[*device]bool, len(ids))
	for _, id := range ids {
		if d, ok := s.byID[id]; ok && !d.deleted && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// twinsOf is twins restricted to the devices of ids, in the order of ids, each once: the twins a
// condition naming them by id can select, found by id (see idsOf).
func (s *store) twinsOf(ids []string, now int64) iter.Seq[*device] {
	seen := make(map[string]bool, len(ids))
	devs := make([]*device, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if d, ok := s.byID[id]; ok {
			devs = append(devs, d)
		}
	}
	return s.asQueried(now, slices.Values(devs), func(d *device) bool { return seen[d.id] })
}
