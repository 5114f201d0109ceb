package query

// Definite returns a condition that is true exactly where e is true, and false — never undefined —
// where e is false or where e is undefined because a property it reads is absent.
//
// Under the hub's three-valued logic NOT over an undefined operand stays undefined, so `NOT (t)`
// excludes every device that lacks a property t reads: `NOT (tags.ring = 'canary')` does not select a
// device without tags.ring. `NOT Definite(t)` selects it. Each comparison, IN and function call is
// guarded by IS_DEFINED of the paths it reads (IS_DEFINED itself is never undefined); AND, OR and NOT
// are rewritten so the guards compose: NOT x becomes "x is definitely false".
//
// One kind of undefined remains: a property that is present with a value of another type than the
// one compared with (tags.ring = 5 against 'canary'), or an object compared with a primitive. Such a
// device is neither included nor excluded by the rewritten condition's NOT; callers that need an exact
// set subtract stored device lists as well, as the engine does.
func Definite(e Expr) Expr { return definite(e, true) }

// definite gives "e is definitely true" (want) or "e is definitely false" (!want).
func definite(e Expr, want bool) Expr {
	switch e := e.(type) {
	case nil, All:
		return Bool{Value: want}
	case Bool:
		return Bool{Value: e.Value == want}
	case Negation:
		return definite(e.X, !want)
	case Logical:
		parts := make([]Expr, len(e.Parts))
		for i, p := range e.Parts {
			parts[i] = definite(p, want)
		}
		// De Morgan for the "definitely false" side: (a AND b) is false when either is.
		if (e.Op == OpAnd) == want {
			return And(parts...)
		}
		return Or(parts...)
	case Call:
		if e.Name == "IS_DEFINED" {
			if want {
				return e
			}
			return Not(e)
		}
	}
	leaf := e
	if !want {
		leaf = Not(e)
	}
	var guards []Expr
	seen := map[string]bool{}
	walkPaths(e, func(p Path) {
		if k := p.String(); !seen[k] {
			seen[k] = true
			guards = append(guards, Call{Name: "IS_DEFINED", Args: []Expr{p}})
		}
	})
	return And(append(guards, leaf)...)
}

// walkPaths calls fn for every property path e reads, in order of appearance.
func walkPaths(e Expr, fn func(Path)) {
	switch e := e.(type) {
	case Path:
		fn(e)
	case Logical:
		for _, p := range e.Parts {
			walkPaths(p, fn)
		}
	case Negation:
		walkPaths(e.X, fn)
	case Comparison:
		walkPaths(e.Left, fn)
		walkPaths(e.Right, fn)
	case InList:
		walkPaths(e.X, fn)
	case Arithmetic:
		walkPaths(e.Left, fn)
		walkPaths(e.Right, fn)
	case Minus:
		walkPaths(e.X, fn)
	case Call:
		for _, a := range e.Args {
			walkPaths(a, fn)
		}
	}
}
