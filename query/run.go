package query

import (
	"encoding/json"
	"iter"
	"strconv"
)

// KeyedObject is an Object that can also tell how a property's name is stored. It is optional: Project
// uses it so that SELECT DeviceId comes back keyed "deviceId", as on the hub, for documents that are
// not maps. Without it the key is the name as written in the query.
type KeyedObject interface {
	Object
	FieldKey(name string) (key string, value any, ok bool)
}

// resolveKey walks a path and returns the value with the last key as stored in the document.
func resolveKey(doc Object, segs []string) (string, any, bool) {
	if doc == nil {
		return "", nil, false
	}
	var cur any = doc
	key := ""
	for _, s := range segs {
		var ok bool
		if k, isKeyed := cur.(KeyedObject); isKeyed {
			key, cur, ok = k.FieldKey(s)
		} else {
			key, cur, ok = field(cur, s)
		}
		if !ok {
			return "", nil, false
		}
	}
	return key, cur, true
}

// Project builds the result row of a non-aggregate query for a document that matched. Each selected path
// that is defined in doc appears under its alias, or under its last key as stored in the document;
// undefined ones are left out. For SELECT * it returns doc itself when doc is a Map or map[string]any,
// and nil otherwise. Project does not apply WHERE.
func (q *Query) Project(doc Object) map[string]any {
	if q.selectAll {
		switch d := doc.(type) {
		case Map:
			return d
		}
		return nil
	}
	row := make(map[string]any, len(q.items))
	for i, it := range q.items {
		if it.Func != "" {
			continue
		}
		key, v, ok := resolveKey(doc, it.Path.Segments)
		if !ok {
			continue
		}
		if it.Alias != "" {
			key = it.Alias
		} else if key == "" {
			key = q.keys[i]
		}
		row[key] = v
	}
	return row
}

// Run executes the query over docs: it applies WHERE itself and returns the rows, at most Top() of
// them. For a non-aggregate query the rows are Project's. For an aggregate query without GROUP BY there
// is exactly one row; with GROUP BY one row per distinct value of the grouped path, in order of first
// appearance, with the grouped value left out for documents where it is undefined.
//
// Aggregates skip undefined values. COUNT() counts matching documents. SUM and AVG are undefined (left
// out of the row) if any value is not a number; SUM of no values is 0 and AVG of none is undefined. MIN
// and MAX order null < false < true < numbers < strings and skip objects and arrays. These follow
// Cosmos DB, which the hub's language descends from; the reference does not document them.
func (q *Query) Run(docs iter.Seq[Object]) []map[string]any {
	rows := []map[string]any{}
	full := func() bool { return q.top >= 0 && len(rows) >= q.top }
	if full() {
		return rows
	}
	if !q.Aggregate() {
		for doc := range docs {
			if !q.matcher.Match(doc) {
				continue
			}
			row := q.Project(doc)
			if row == nil && q.selectAll {
				row = toMap(doc)
			}
			rows = append(rows, row)
			if full() {
				break
			}
		}
		return rows
	}

	type group struct {
		key     any
		defined bool
		accs    []accumulator
	}
	var order []*group
	groups := map[groupID]*group{}
	newGroup := func() *group {
		g := &group{accs: make([]accumulator, len(q.items))}
		order = append(order, g)
		return g
	}
	var single *group
	if q.groupBy == nil {
		single = newGroup()
	}
	for doc := range docs {
		if !q.matcher.Match(doc) {
			continue
		}
		g := single
		if g == nil {
			raw, ok := resolve(doc, q.groupBy.Segments)
			k := groupKey(raw, ok)
			if g = groups[k]; g == nil {
				g = newGroup()
				g.key, g.defined = raw, ok
				groups[k] = g
			}
		}
		for i, it := range q.items {
			if it.Func == "" {
				continue
			}
			var v value
			if it.Func != "COUNT" {
				if raw, ok := resolve(doc, it.Path.Segments); ok {
					v = toValue(raw)
				}
			}
			g.accs[i].add(it.Func, v)
		}
	}
	for _, g := range order {
		row := make(map[string]any, len(q.items))
		for i, it := range q.items {
			key := q.keys[i]
			if it.Func == "" {
				if g.defined {
					row[key] = g.key
				}
				continue
			}
			if v, ok := g.accs[i].result(it.Func); ok {
				row[key] = v
			}
		}
		rows = append(rows, row)
		if full() {
			break
		}
	}
	return rows
}

// toMap copies an Object that is a plain map into a row; other Objects are returned through
// encoding/json if they marshal, else nil.
func toMap(doc Object) map[string]any {
	switch d := doc.(type) {
	case Map:
		return d
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

// groupID identifies a GROUP BY value: its type and, for strings, the string itself, so that grouping
// by a string property (the common case) allocates nothing per document.
type groupID struct {
	k kind
	s string
}

// groupKey identifies a GROUP BY value: values of different types never share a group. Objects and
// arrays group by their JSON; a value that cannot be marshalled groups with other such values.
func groupKey(raw any, ok bool) groupID {
	if !ok {
		return groupID{k: kUndef}
	}
	v := toValue(raw)
	switch v.k {
	case kNull:
		return groupID{k: kNull}
	case kBool:
		return groupID{k: kBool, s: strconv.FormatBool(v.b)}
	case kNum:
		return groupID{k: kNum, s: strconv.FormatFloat(v.n, 'g', -1, 64)}
	case kStr:
		return groupID{k: kStr, s: v.s}
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return groupID{k: kObj, s: "?"}
	}
	return groupID{k: kObj, s: string(data)}
}

type accumulator struct {
	count  int
	sum    float64
	nums   int
	nonNum bool
	best   value
	have   bool
}

// rank orders values of different types for MIN and MAX.
func rank(v value) int {
	switch v.k {
	case kNull:
		return 0
	case kBool:
		if v.b {
			return 2
		}
		return 1
	case kNum:
		return 3
	}
	return 4
}

func (a *accumulator) add(fn string, v value) {
	switch fn {
	case "COUNT":
		a.count++
	case "SUM", "AVG":
		switch v.k {
		case kUndef:
		case kNum:
			a.sum += v.n
			a.nums++
		default:
			a.nonNum = true
		}
	case "MIN", "MAX":
		if v.k == kUndef || v.k >= kObj {
			return
		}
		if !a.have {
			a.best, a.have = v, true
			return
		}
		c := rank(v) - rank(a.best)
		if c == 0 {
			c, _ = order(v, a.best)
		}
		if (fn == "MIN" && c < 0) || (fn == "MAX" && c > 0) {
			a.best = v
		}
	}
}

func (a *accumulator) result(fn string) (any, bool) {
	switch fn {
	case "COUNT":
		return a.count, true
	case "SUM":
		if a.nonNum {
			return nil, false
		}
		return a.sum, true
	case "AVG":
		if a.nonNum || a.nums == 0 {
			return nil, false
		}
		return a.sum / float64(a.nums), true
	}
	if !a.have {
		return nil, false
	}
	switch a.best.k {
	case kNull:
		return nil, true
	case kBool:
		return a.best.b, true
	case kNum:
		return a.best.n, true
	}
	return a.best.s, true
}
