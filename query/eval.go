package query

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Object is a JSON object the evaluator can read. Field returns the value of the named property and
// whether it is present; IoT Hub property names are case-insensitive, so an implementation should try
// the exact name first and then a case-insensitive match, as Map does. Values are map[string]any,
// Object, []any, string, bool, nil (JSON null), and numbers as float64, int, int32, int64 or json.Number.
type Object interface {
	Field(name string) (any, bool)
}

// Map is a JSON object decoded by encoding/json. It implements Object.
type Map map[string]any

// Field looks name up exactly, then case-insensitively. When several keys differ only in case, the
// case-insensitive match picks one of them unpredictably; twins written through the hub cannot hold
// such keys at the top level, and the exact match wins whenever it exists.
func (m Map) Field(name string) (any, bool) {
	_, v, ok := lookup(m, name)
	return v, ok
}

// lookup finds name in m: exact first, then case-insensitive. It returns the key as stored.
func lookup(m map[string]any, name string) (string, any, bool) {
	if v, ok := m[name]; ok {
		return name, v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return k, v, true
		}
	}
	return "", nil, false
}

// field reads one property of a value; it is absent unless the value is an object.
func field(v any, name string) (key string, out any, ok bool) {
	switch o := v.(type) {
	case map[string]any:
		return lookup(o, name)
	case Map:
		return lookup(o, name)
	case Object:
		out, ok = o.Field(name)
		return name, out, ok
	}
	return "", nil, false
}

// kind is the JSON type of a value; kUndef marks an absent property or an undefined result.
type kind uint8

const (
	kUndef kind = iota
	kNull
	kBool
	kNum
	kStr
	kObj
	kArr
)

// value is an evaluated operand. It is passed by value so that evaluating a condition allocates nothing.
type value struct {
	k   kind
	b   bool
	n   float64
	s   string
	raw any // the document value for objects and arrays
}

var (
	undef  = value{}
	vTrue  = value{k: kBool, b: true}
	vFalse = value{k: kBool}
)

func boolValue(b bool) value {
	if b {
		return vTrue
	}
	return vFalse
}

// toValue classifies a document value. A json.Number that is not a valid number reads as undefined.
func toValue(v any) value {
	switch x := v.(type) {
	case nil:
		return value{k: kNull}
	case string:
		return value{k: kStr, s: x}
	case bool:
		return boolValue(x)
	case float64:
		return value{k: kNum, n: x}
	case int:
		return value{k: kNum, n: float64(x)}
	case int64:
		return value{k: kNum, n: float64(x)}
	case int32:
		return value{k: kNum, n: float64(x)}
	case float32:
		return value{k: kNum, n: float64(x)}
	case uint:
		return value{k: kNum, n: float64(x)}
	case uint32:
		return value{k: kNum, n: float64(x)}
	case uint64:
		return value{k: kNum, n: float64(x)}
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return undef
		}
		return value{k: kNum, n: f}
	case map[string]any, Map, Object:
		return value{k: kObj, raw: v}
	case []any:
		return value{k: kArr, raw: v}
	}
	return undef
}

// constValue turns a constant node into a value.
func constValue(e Expr) value {
	switch e := e.(type) {
	case String:
		return value{k: kStr, s: e.Value}
	case Number:
		return value{k: kNum, n: e.Value}
	case Bool:
		return boolValue(e.Value)
	case Null:
		return value{k: kNull}
	case Array:
		return value{k: kArr, raw: e}
	}
	return undef
}

// isConst reports whether e is a constant (not an array, which is compared as a whole).
func isConst(e Expr) bool {
	switch e.(type) {
	case String, Number, Bool, Null, Undefined:
		return true
	}
	return false
}

// equal compares two primitive values of the same type. ok is false when the comparison is undefined:
// either side undefined, the types differ (no coercion: '43' is not 43), or either side is an object
// or array (the hub compares primitives only).
func equal(a, b value) (eq, ok bool) {
	if a.k != b.k || a.k == kUndef || a.k >= kObj {
		return false, false
	}
	switch a.k {
	case kNull:
		return true, true
	case kBool:
		return a.b == b.b, true
	case kNum:
		return a.n == b.n, true
	}
	return a.s == b.s, true
}

// order compares two values for < <= > >=: numbers numerically, strings ordinally (byte order of UTF-8,
// which is code point order), booleans with false < true. Anything else is undefined.
func order(a, b value) (c int, ok bool) {
	if a.k != b.k {
		return 0, false
	}
	switch a.k {
	case kNum:
		switch {
		case a.n < b.n:
			return -1, true
		case a.n > b.n:
			return 1, true
		case a.n == b.n:
			return 0, true
		}
		return 0, false // NaN
	case kStr:
		return strings.Compare(a.s, b.s), true
	case kBool:
		switch {
		case a.b == b.b:
			return 0, true
		case !a.b:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

func compare(op CompareOp, a, b value) value {
	switch op {
	case Eq, Ne:
		eq, ok := equal(a, b)
		if !ok {
			return undef
		}
		return boolValue(eq == (op == Eq))
	}
	c, ok := order(a, b)
	if !ok {
		return undef
	}
	switch op {
	case Lt:
		return boolValue(c < 0)
	case Le:
		return boolValue(c <= 0)
	case Gt:
		return boolValue(c > 0)
	}
	return boolValue(c >= 0)
}

// evalFn evaluates a compiled node against a document.
type evalFn func(doc Object) value

// Matcher is a compiled condition. It is safe for concurrent use.
type Matcher struct {
	eval evalFn
	all  bool
}

// Match reports whether the condition is Boolean true for doc. Undefined, null, false and non-Boolean
// results all mean no match (three-valued logic: a twin without tags.x matches neither tags.x = 'a' nor
// NOT (tags.x = 'a')). A nil Matcher matches nothing; All matches every document, even nil. Match does
// not allocate for conditions made of paths, constants, comparisons, IN, AND, OR, NOT and the
// functions.
func (m *Matcher) Match(doc Object) bool {
	if m == nil {
		return false
	}
	if m.all {
		return true
	}
	v := m.eval(doc)
	return v.k == kBool && v.b
}

// Compile prepares a condition for evaluation against many documents. It never fails for a tree the
// parser or the builders made; an unknown function evaluates to undefined. A nil Expr is All.
func Compile(e Expr) *Matcher {
	return compileWith(e, false)
}

// compileWith compiles e; for a devices.jobs query (jobs true) paths lose their "devices.jobs." prefix.
func compileWith(e Expr, jobs bool) *Matcher {
	switch e.(type) {
	case nil, All:
		return &Matcher{all: true}
	}
	c := compiler{jobs: jobs}
	return &Matcher{eval: c.compile(e)}
}

type compiler struct{ jobs bool }

func (c compiler) segments(p Path) []string {
	if !c.jobs || !isJobPath(p) {
		return p.Segments
	}
	segs := append([]string(nil), p.Segments[2:]...)
	if strings.EqualFold(segs[0], "createdTimeUtc") {
		segs[0] = "createdDateTimeUtc"
	}
	return segs
}

// resolve walks a path from the document root.
func resolve(doc Object, segs []string) (any, bool) {
	var cur any = doc
	if doc == nil {
		return nil, false
	}
	for _, s := range segs {
		var ok bool
		_, cur, ok = field(cur, s)
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func (c compiler) compile(e Expr) evalFn {
	switch e := e.(type) {
	case All:
		return func(Object) value { return vTrue }
	case Path:
		segs := c.segments(e)
		return func(doc Object) value {
			v, ok := resolve(doc, segs)
			if !ok {
				return undef
			}
			return toValue(v)
		}
	case String, Number, Bool, Null, Undefined, Array:
		v := constValue(e)
		return func(Object) value { return v }
	case Logical:
		parts := make([]evalFn, len(e.Parts))
		for i, p := range e.Parts {
			parts[i] = c.compile(p)
		}
		if e.Op == OpOr {
			return func(doc Object) value {
				result := vFalse
				for _, p := range parts {
					v := p(doc)
					if v.k != kBool {
						result = undef
					} else if v.b {
						return vTrue
					}
				}
				return result
			}
		}
		return func(doc Object) value {
			result := vTrue
			for _, p := range parts {
				v := p(doc)
				if v.k != kBool {
					result = undef
				} else if !v.b {
					return vFalse
				}
			}
			return result
		}
	case Negation:
		x := c.compile(e.X)
		return func(doc Object) value {
			v := x(doc)
			if v.k != kBool {
				return undef
			}
			return boolValue(!v.b)
		}
	case Comparison:
		return c.compileComparison(e)
	case InList:
		return c.compileIn(e)
	case Arithmetic:
		l, r := c.compile(e.Left), c.compile(e.Right)
		op := e.Op
		return func(doc Object) value {
			a, b := l(doc), r(doc)
			if a.k != kNum || b.k != kNum {
				return undef
			}
			switch op {
			case '+':
				return value{k: kNum, n: a.n + b.n}
			case '-':
				return value{k: kNum, n: a.n - b.n}
			case '*':
				return value{k: kNum, n: a.n * b.n}
			case '/':
				if b.n == 0 {
					return undef
				}
				return value{k: kNum, n: a.n / b.n}
			case '%':
				if b.n == 0 {
					return undef
				}
				return value{k: kNum, n: math.Mod(a.n, b.n)}
			}
			return undef
		}
	case Minus:
		x := c.compile(e.X)
		return func(doc Object) value {
			v := x(doc)
			if v.k != kNum {
				return undef
			}
			return value{k: kNum, n: -v.n}
		}
	case Call:
		return c.compileCall(e)
	}
	return func(Object) value { return undef }
}

func (c compiler) compileComparison(e Comparison) evalFn {
	op := e.Op
	// The common shapes path op constant and constant op path get a direct closure.
	if p, ok := e.Left.(Path); ok && isConst(e.Right) {
		return pathConst(c.segments(p), op, constValue(e.Right), false)
	}
	if p, ok := e.Right.(Path); ok && isConst(e.Left) {
		return pathConst(c.segments(p), op, constValue(e.Left), true)
	}
	l, r := c.compile(e.Left), c.compile(e.Right)
	return func(doc Object) value { return compare(op, l(doc), r(doc)) }
}

func pathConst(segs []string, op CompareOp, k value, swapped bool) evalFn {
	if k.k == kUndef {
		return func(Object) value { return undef }
	}
	return func(doc Object) value {
		raw, ok := resolve(doc, segs)
		if !ok {
			return undef
		}
		v := toValue(raw)
		if swapped {
			return compare(op, k, v)
		}
		return compare(op, v, k)
	}
}

// compileIn evaluates X IN [...]: true when X equals one of the values, false when X is a defined
// primitive equal to none, undefined otherwise. NIN negates a defined result.
func (c compiler) compileIn(e InList) evalFn {
	x := c.compile(e.X)
	vals := make([]value, 0, len(e.Values))
	strs := map[string]bool{}
	onlyStrings := true
	for _, v := range e.Values {
		cv := constValue(v)
		vals = append(vals, cv)
		if cv.k == kStr {
			strs[cv.s] = true
		} else {
			onlyStrings = false
		}
	}
	neg := e.Negated
	if onlyStrings && len(vals) > 8 {
		// Long deviceId batches: a set lookup instead of a scan.
		return func(doc Object) value {
			v := x(doc)
			switch v.k {
			case kStr:
				return boolValue(strs[v.s] != neg)
			case kNull, kBool, kNum:
				return boolValue(neg)
			}
			return undef
		}
	}
	return func(doc Object) value {
		v := x(doc)
		if v.k == kUndef || v.k >= kObj {
			return undef
		}
		for _, w := range vals {
			if eq, ok := equal(v, w); ok && eq {
				return boolValue(!neg)
			}
		}
		return boolValue(neg)
	}
}

func (c compiler) compileCall(e Call) evalFn {
	switch e.Name {
	case "IS_DEFINED":
		if len(e.Args) != 1 {
			break
		}
		x := c.compile(e.Args[0])
		return func(doc Object) value { return boolValue(x(doc).k != kUndef) }
	case "STARTSWITH", "ENDSWITH":
		if len(e.Args) != 2 {
			break
		}
		s, p := c.compile(e.Args[0]), c.compile(e.Args[1])
		suffix := e.Name == "ENDSWITH"
		return func(doc Object) value {
			a, b := s(doc), p(doc)
			if a.k != kStr || b.k != kStr {
				return undef
			}
			if suffix {
				return boolValue(strings.HasSuffix(a.s, b.s))
			}
			return boolValue(strings.HasPrefix(a.s, b.s))
		}
	}
	return func(Object) value { return undef }
}
