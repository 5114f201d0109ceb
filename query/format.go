package query

import (
	"math"
	"strconv"
	"strings"
)

// Format renders a condition as text the hub accepts. All (and a nil Expr) print as "*". Parsing the
// result gives back a tree Equal to e for any tree ParseCondition produced. Strings are always printed
// in single quotes by Quote, so no value can end its literal early.
//
// Some paths that only builders can make have no faithful text: an empty segment, a segment holding
// "]]" or ending in "]" (the escape cannot hold it) and a first segment that is not a plain identifier
// (the parser accepts [[...]] only after a dot). Such a segment prints as the empty escape "[[]]",
// which never parses, so the mistake surfaces as an error rather than as a different condition.
func Format(e Expr) string {
	if e == nil {
		return "*"
	}
	var b strings.Builder
	writeExpr(&b, e)
	return b.String()
}

// Precedence levels, loosest first.
const (
	precOr = iota + 1
	precAnd
	precNot
	precCompare
	precAdd
	precMul
	precUnary
	precPrimary
)

func prec(e Expr) int {
	switch e := e.(type) {
	case Logical:
		if e.Op == OpOr {
			return precOr
		}
		return precAnd
	case Negation:
		return precNot
	case Comparison, InList:
		return precCompare
	case Arithmetic:
		if e.Op == '+' || e.Op == '-' {
			return precAdd
		}
		return precMul
	case Minus:
		return precUnary
	case Number:
		if e.Value < 0 || (e.Value == 0 && math.Signbit(e.Value)) {
			return precUnary
		}
	}
	return precPrimary
}

// writeOperand prints e, in parentheses when its precedence is below min.
func writeOperand(b *strings.Builder, e Expr, min int) {
	if prec(e) < min {
		b.WriteByte('(')
		writeExpr(b, e)
		b.WriteByte(')')
		return
	}
	writeExpr(b, e)
}

func writeExpr(b *strings.Builder, e Expr) {
	switch e := e.(type) {
	case nil, All:
		b.WriteByte('*')
	case Logical:
		// Parts that are themselves AND or OR keep their parentheses: an AND inside an AND must (the
		// parser would flatten it otherwise) and an AND inside an OR reads better with them.
		sep := " " + string(e.Op) + " "
		for i, part := range e.Parts {
			if i > 0 {
				b.WriteString(sep)
			}
			writeOperand(b, part, precNot)
		}
	case Negation:
		b.WriteString("NOT ")
		writeOperand(b, e.X, precPrimary)
	case Comparison:
		writeOperand(b, e.Left, precCompare+1)
		b.WriteByte(' ')
		b.WriteString(string(e.Op))
		b.WriteByte(' ')
		writeOperand(b, e.Right, precCompare+1)
	case InList:
		writeOperand(b, e.X, precCompare+1)
		if e.Negated {
			b.WriteString(" NIN ")
		} else {
			b.WriteString(" IN ")
		}
		writeArray(b, e.Values)
	case Arithmetic:
		p := prec(e)
		writeOperand(b, e.Left, p)
		b.WriteByte(' ')
		b.WriteByte(byte(e.Op))
		b.WriteByte(' ')
		writeOperand(b, e.Right, p+1)
	case Minus:
		b.WriteString("-")
		if prec(e.X) == precUnary {
			b.WriteByte(' ') // "- -x", never "--x"
		}
		writeOperand(b, e.X, precUnary)
	case Call:
		b.WriteString(e.Name)
		b.WriteByte('(')
		for i, a := range e.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			writeOperand(b, a, precAdd)
		}
		b.WriteByte(')')
	case Path:
		writePath(b, e)
	case String:
		writeQuoted(b, e.Value)
	case Number:
		b.WriteString(formatNumber(e.Value))
	case Bool:
		if e.Value {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case Null:
		b.WriteString("null")
	case Undefined:
		b.WriteString("undefined")
	case Array:
		writeArray(b, e.Elems)
	}
}

func writeArray(b *strings.Builder, elems []Expr) {
	b.WriteByte('[')
	for i, v := range elems {
		if i > 0 {
			b.WriteString(", ")
		}
		writeExpr(b, v)
	}
	b.WriteByte(']')
}

// formatNumber prints a float in the shortest form that reads back as the same value.
func formatNumber(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "undefined" // not reachable from parsed text; the hub has no such number
	case f == math.Trunc(f) && math.Abs(f) < 1e21:
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func writePath(b *strings.Builder, p Path) {
	if len(p.Segments) == 0 {
		b.WriteString("[[]]")
	}
	for i, s := range p.Segments {
		if i > 0 {
			b.WriteByte('.')
		}
		switch {
		case plainSegment(s):
			b.WriteString(s)
		case i == 0 || s == "" || strings.Contains(s, "]]") || strings.HasSuffix(s, "]"):
			b.WriteString("[[]]")
		default:
			b.WriteString("[[")
			b.WriteString(s)
			b.WriteString("]]")
		}
	}
}

// plainSegment reports whether a segment can be printed without [[...]] escapes.
func plainSegment(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	if isKeyword(s) {
		return false
	}
	// A segment spelled true/false/null/undefined would read as a constant at the start of a path;
	// escaping it everywhere keeps the rule simple.
	return !isLiteralWord(s)
}

// Quote returns s as a single-quoted string literal that the hub reads back as exactly s: a quote
// becomes \', a backslash \\, and control characters \uXXXX. Other bytes, including non-ASCII UTF-8,
// are kept as they are.
func Quote(s string) string {
	var b strings.Builder
	writeQuoted(&b, s)
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) {
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
}

// And joins conditions with AND. Nested ANDs are flattened, All, true and nil parts are dropped, a false
// part makes the whole false, and a single remaining part is returned as is; And() is All{}.
func And(parts ...Expr) Expr { return join(OpAnd, parts) }

// Or joins conditions with OR, flattening nested ORs and dropping nil and false parts. If any part is
// All (or true) the result is that part. Or() selects nothing and is the constant false (a choice: the
// hub documents no "no devices" condition; false is a valid condition that is never true).
func Or(parts ...Expr) Expr { return join(OpOr, parts) }

// join is And or Or, as op says. The two are duals: All and true are AND's identity and absorb an OR;
// false is OR's identity and absorbs an AND; no parts at all give the identity.
func join(op LogicalOp, parts []Expr) Expr {
	or := op == OpOr
	var out []Expr
	for _, p := range parts {
		switch p := p.(type) {
		case nil:
		case All:
			if or {
				return All{}
			}
		case Bool:
			if p.Value == or {
				return p
			}
		case Logical:
			if p.Op == op {
				out = append(out, p.Parts...)
			} else {
				out = append(out, p)
			}
		default:
			out = append(out, p)
		}
	}
	switch len(out) {
	case 0:
		if or {
			return Bool{Value: false}
		}
		return All{}
	case 1:
		return out[0]
	}
	return Logical{Op: op, Parts: out}
}

// Not negates a condition. Not(All{}) (and Not(nil)) is the constant false, since "NOT *" is not a
// condition the hub accepts; Not of a Boolean constant is the other constant.
func Not(e Expr) Expr {
	switch e := e.(type) {
	case nil, All:
		return Bool{Value: false}
	case Bool:
		return Bool{Value: !e.Value}
	}
	return Negation{X: e}
}

// FormatIn is Format(In(path, values)) without building the expression: the condition a job over
// many devices by id needs, written as Format writes it. It panics when values is empty (In gives the
// constant false there, which is no IN condition).
func FormatIn(path string, values []string) string {
	if len(values) == 0 {
		panic("query: FormatIn of no values")
	}
	var b strings.Builder
	b.WriteString(Format(NewPath(path)))
	b.WriteString(" IN [")
	for i, v := range values {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Quote(v))
	}
	b.WriteByte(']')
	return b.String()
}

// SplitIn splits values into consecutive [start, end) ranges whose conditions `path IN [...]`, as
// Format (and FormatIn) write them, are at most max characters each; a value too long on its own
// still gets a range of its own.
func SplitIn(path string, values []string, max int) [][2]int {
	overhead := len(Format(NewPath(path))) + len(" IN []")
	var out [][2]int
	start, length := 0, overhead
	for i, v := range values {
		n := len(Quote(v))
		if i > start && length+2+n > max {
			out = append(out, [2]int{start, i})
			start, length = i, overhead
		}
		if i > start {
			n += 2 // ", "
		}
		length += n
	}
	if start < len(values) {
		out = append(out, [2]int{start, len(values)})
	}
	return out
}

// In builds `<path> IN ['v1', 'v2', ...]`, with path a dotted path such as "deviceId". With no values
// it returns the constant false (nothing matches), since an empty list is not valid syntax.
func In(path string, values []string) Expr {
	if len(values) == 0 {
		return Bool{Value: false}
	}
	vs := make([]Expr, len(values))
	for i, v := range values {
		vs[i] = String{Value: v}
	}
	return InList{X: NewPath(path), Values: vs}
}
