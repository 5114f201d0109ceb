package query

import (
	"strconv"
	"strings"
)

// Collection is what a query selects from.
type Collection int

// The collections of the FROM clause.
const (
	Devices    Collection = iota // FROM devices: device twins
	Modules                      // FROM devices.modules: module twins
	DeviceJobs                   // FROM devices.jobs: per-device job records
)

// String gives the collection as written after FROM.
func (c Collection) String() string {
	switch c {
	case Modules:
		return "devices.modules"
	case DeviceJobs:
		return "devices.jobs"
	}
	return "devices"
}

// SelectItem is one element of a SELECT list: a property path, or an aggregate (Func is COUNT, SUM,
// AVG, MIN or MAX; Path is empty for COUNT()). Alias is "" when there is no AS.
type SelectItem struct {
	Func  string
	Path  Path
	Alias string
}

// String renders the item as in a SELECT list.
func (it SelectItem) String() string {
	var b strings.Builder
	if it.Func != "" {
		b.WriteString(it.Func)
		b.WriteByte('(')
		if len(it.Path.Segments) > 0 {
			writePath(&b, it.Path)
		}
		b.WriteByte(')')
	} else {
		writePath(&b, it.Path)
	}
	if it.Alias != "" {
		b.WriteString(" AS ")
		b.WriteString(it.Alias)
	}
	return b.String()
}

// Query is a parsed whole query: SELECT [TOP n] ... FROM ... [WHERE ...] [GROUP BY ...].
type Query struct {
	top       int
	selectAll bool
	items     []SelectItem
	from      Collection
	where     Expr
	groupBy   *Path
	keys      []string // result key of each item
	matcher   *Matcher
}

var aggregates = map[string]bool{"COUNT": true, "SUM": true, "AVG": true, "MIN": true, "MAX": true}

// Parse parses a whole query. Beyond syntax it enforces what the reference documents: devices.jobs
// takes only SELECT *, no aggregates and no GROUP BY, and its conditions name job properties only, as
// devices.jobs.<name>; GROUP BY works FROM devices only; in an aggregate query every plain path in the
// SELECT list is the GROUP BY path. Aggregates without GROUP BY are also accepted FROM devices.modules
// (a choice: the reference is silent). Every error is a *Error.
func Parse(src string) (*Query, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	q := &Query{top: -1, where: All{}}
	if !p.is("SELECT") {
		return nil, errorf(p.tok.pos, "expected SELECT at the start of a query, found %s", p.found())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.is("TOP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		t := p.tok
		if t.kind != tNumber || t.num != float64(int64(t.num)) || t.num < 0 || t.num > 1<<31-1 {
			return nil, errorf(t.pos, "expected a whole number after TOP, found %s", p.found())
		}
		q.top = int(t.num)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	var itemPos []int
	if p.tok.kind == tStar {
		q.selectAll = true
		if err := p.advance(); err != nil {
			return nil, err
		}
	} else {
		for {
			itemPos = append(itemPos, p.tok.pos)
			it, err := p.parseSelectItem()
			if err != nil {
				return nil, err
			}
			q.items = append(q.items, it)
			if p.tok.kind != tComma {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	if !p.is("FROM") {
		return nil, errorf(p.tok.pos, "expected ',' or FROM after the SELECT list, found %s", p.found())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if q.from, err = p.parseCollection(); err != nil {
		return nil, err
	}
	p.paths = nil
	if p.is("WHERE") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tEOF {
			return nil, errorf(p.tok.pos, "expected a condition after WHERE")
		}
		if q.where, err = p.parseOr(); err != nil {
			return nil, err
		}
		if err := checkDepth(q.where); err != nil {
			return nil, errorf(p.prev.end, "%s", err.(*Error).Msg)
		}
	}
	groupPos := p.tok.pos
	if p.is("GROUP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if !p.is("BY") {
			return nil, errorf(p.tok.pos, "expected BY after GROUP, found %s", p.found())
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tIdent || isKeyword(p.tok.val) || isLiteralWord(p.tok.val) {
			return nil, errorf(p.tok.pos, "expected a property path after GROUP BY, found %s", p.found())
		}
		whereCount := len(p.paths)
		path, err := p.parsePath()
		if err != nil {
			return nil, err
		}
		p.paths = p.paths[:whereCount]
		q.groupBy = &path
	}
	if p.tok.kind != tEOF {
		if p.is("ORDER") {
			return nil, errorf(p.tok.pos, "ORDER BY is not supported by IoT Hub queries: sort the results yourself")
		}
		if _, ok := q.where.(All); !ok && q.groupBy == nil {
			return nil, p.trailing("GROUP BY or end of query")
		}
		return nil, errorf(p.tok.pos, "expected end of query, found %s", p.found())
	}
	if err := q.check(p.paths, itemPos, groupPos); err != nil {
		return nil, err
	}
	q.matcher = compileWith(q.where, q.from == DeviceJobs)
	return q, nil
}

func (p *parser) parseSelectItem() (SelectItem, error) {
	var it SelectItem
	t := p.tok
	if t.kind != tIdent || isKeyword(t.val) || isLiteralWord(t.val) {
		return it, errorf(t.pos, "expected '*', a property path or an aggregate such as COUNT() after %s, found %s", p.prev.describe(p.src), p.found())
	}
	var err error
	save := p.lx
	next, lexErr := p.lx.next()
	p.lx = save
	if lexErr == nil && next.kind == tLParen {
		name := strings.ToUpper(t.val)
		if !aggregates[name] {
			return it, errorf(t.pos, "expected a property path or one of COUNT(), SUM(path), AVG(path), MIN(path), MAX(path), found %s(", clip(t.val))
		}
		it.Func = name
		if err := p.advance(); err != nil {
			return it, err
		}
		if err := p.advance(); err != nil { // (
			return it, err
		}
		if name == "COUNT" {
			if p.tok.kind != tRParen {
				return it, errorf(p.tok.pos, "COUNT takes no argument: write COUNT()")
			}
		} else {
			if p.tok.kind != tIdent || isKeyword(p.tok.val) || isLiteralWord(p.tok.val) {
				return it, errorf(p.tok.pos, "expected a property path in %s(...), found %s", name, p.found())
			}
			if it.Path, err = p.parsePath(); err != nil {
				return it, err
			}
			if p.tok.kind != tRParen {
				return it, errorf(p.tok.pos, "expected ')' after the path in %s(...), found %s", name, p.found())
			}
		}
		if err := p.advance(); err != nil {
			return it, err
		}
	} else if it.Path, err = p.parsePath(); err != nil {
		return it, err
	}
	if p.is("AS") {
		if err := p.advance(); err != nil {
			return it, err
		}
		if p.tok.kind != tIdent || isKeyword(p.tok.val) || isLiteralWord(p.tok.val) {
			return it, errorf(p.tok.pos, "expected a name after AS, found %s", p.found())
		}
		it.Alias = p.tok.val
		if err := p.advance(); err != nil {
			return it, err
		}
	}
	return it, nil
}

func (p *parser) parseCollection() (Collection, error) {
	bad := func() error {
		return errorf(p.tok.pos, "expected devices, devices.modules or devices.jobs after FROM, found %s", p.found())
	}
	if !p.is("devices") {
		return 0, bad()
	}
	if err := p.advance(); err != nil {
		return 0, err
	}
	if p.tok.kind != tDot {
		return Devices, nil
	}
	if err := p.advance(); err != nil {
		return 0, err
	}
	var c Collection
	switch {
	case p.is("modules"):
		c = Modules
	case p.is("jobs"):
		c = DeviceJobs
	default:
		return 0, bad()
	}
	return c, p.advance()
}

// isJobPath reports whether a path is written devices.jobs.<name>.
func isJobPath(p Path) bool {
	s := p.Segments
	return len(s) >= 3 && strings.EqualFold(s[0], "devices") && strings.EqualFold(s[1], "jobs")
}

func samePath(a, b Path) bool {
	if len(a.Segments) != len(b.Segments) {
		return false
	}
	for i := range a.Segments {
		if !strings.EqualFold(a.Segments[i], b.Segments[i]) {
			return false
		}
	}
	return true
}

// check applies the collection and aggregate rules.
func (q *Query) check(wherePaths []posPath, itemPos []int, groupPos int) error {
	for _, pp := range wherePaths {
		if q.from == DeviceJobs && !isJobPath(pp.path) {
			return errorf(pp.pos, "a devices.jobs query names job properties as devices.jobs.<name> and cannot test twin properties: found %s", pp.path)
		}
		if q.from != DeviceJobs && isJobPath(pp.path) {
			return errorf(pp.pos, "job properties such as %s are queryable only FROM devices.jobs", pp.path)
		}
	}
	hasAgg := false
	for _, it := range q.items {
		hasAgg = hasAgg || it.Func != ""
	}
	if q.from == DeviceJobs && !q.selectAll {
		return errorf(itemPos[0], "devices.jobs supports only SELECT *")
	}
	if q.groupBy != nil {
		if q.from != Devices {
			return errorf(groupPos, "GROUP BY is supported only FROM devices, not FROM %s", q.from)
		}
		if q.selectAll {
			return errorf(groupPos, "GROUP BY needs a SELECT list of the grouped path and aggregates, not SELECT *")
		}
	}
	seen := map[string]bool{}
	q.keys = make([]string, len(q.items))
	unnamed := 0
	for i, it := range q.items {
		if it.Func == "" && q.groupBy != nil && !samePath(it.Path, *q.groupBy) {
			return errorf(itemPos[i], "%s must be the GROUP BY path (%s) or inside an aggregate", it.Path, *q.groupBy)
		}
		if it.Func == "" && q.groupBy == nil && hasAgg {
			return errorf(itemPos[i], "%s is not inside an aggregate: add GROUP BY %s or remove it", it.Path, it.Path)
		}
		// The key is the alias, the last segment of a path, or $1, $2... for aggregates without an alias,
		// numbered in order (a choice after Cosmos DB; the reference's examples always alias aggregates).
		k := it.Alias
		switch {
		case k != "":
		case it.Func == "":
			k = it.Path.Segments[len(it.Path.Segments)-1]
		default:
			unnamed++
			k = "$" + strconv.Itoa(unnamed)
		}
		q.keys[i] = k
		if seen[k] {
			return errorf(itemPos[i], "two columns are named %q: add AS <name> to one of them", k)
		}
		seen[k] = true
	}
	return nil
}

// String renders the query as text the hub accepts; Parse gives back an equal query.
func (q *Query) String() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if q.top >= 0 {
		b.WriteString("TOP ")
		b.WriteString(strconv.Itoa(q.top))
		b.WriteByte(' ')
	}
	if q.selectAll {
		b.WriteByte('*')
	}
	for i, it := range q.items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(it.String())
	}
	b.WriteString(" FROM ")
	b.WriteString(q.from.String())
	if _, all := q.where.(All); !all {
		b.WriteString(" WHERE ")
		writeExpr(&b, q.where)
	}
	if q.groupBy != nil {
		b.WriteString(" GROUP BY ")
		writePath(&b, *q.groupBy)
	}
	return b.String()
}

// WithWhere returns a copy of q with where as its WHERE condition (All{} for none), so that a caller
// can rewrite a condition and render the query again with String.
func (q *Query) WithWhere(where Expr) *Query {
	c := *q
	if where == nil {
		where = All{}
	}
	c.where = where
	c.matcher = compileWith(where, q.from == DeviceJobs)
	return &c
}

// Collection is the FROM collection.
func (q *Query) Collection() Collection { return q.from }

// Where is the WHERE condition, All{} when there is none. For devices.jobs its paths are written in
// full (devices.jobs.status); Matcher resolves them against the job record.
func (q *Query) Where() Expr { return q.where }

// Matcher is the compiled WHERE condition. For devices.jobs paths resolve against the job record with
// the devices.jobs. prefix stripped, and devices.jobs.createdTimeUtc (the name the documentation's
// example uses, though the record's field is createdDateTimeUtc) reads createdDateTimeUtc: a choice
// that makes the documented example work.
func (q *Query) Matcher() *Matcher { return q.matcher }

// Top is n from SELECT TOP n, or -1 without TOP.
func (q *Query) Top() int { return q.top }

// SelectAll reports SELECT *.
func (q *Query) SelectAll() bool { return q.selectAll }

// Select returns the SELECT list (empty for SELECT *).
func (q *Query) Select() []SelectItem { return append([]SelectItem(nil), q.items...) }

// GroupBy returns the GROUP BY path and whether there is one.
func (q *Query) GroupBy() (Path, bool) {
	if q.groupBy == nil {
		return Path{}, false
	}
	return *q.groupBy, true
}

// Aggregate reports whether the query has COUNT/SUM/AVG/MIN/MAX or GROUP BY, so that Run, not
// Project, computes its rows.
func (q *Query) Aggregate() bool {
	if q.groupBy != nil {
		return true
	}
	for _, it := range q.items {
		if it.Func != "" {
			return true
		}
	}
	return false
}
