package query

import (
	"reflect"
	"strings"
)

// Expr is a node of a condition's syntax tree. The set of node types is closed: All, Logical, Negation,
// Comparison, InList, Arithmetic, Minus, Call, Path, String, Number, Bool, Null, Undefined and Array.
// Nodes are plain values; compare two trees with Equal, not ==.
type Expr interface{ node() }

// All is the job condition "*": every device. It only ever appears as a whole condition.
type All struct{}

// LogicalOp is AND or OR.
type LogicalOp string

// The logical operators.
const (
	OpAnd LogicalOp = "AND"
	OpOr  LogicalOp = "OR"
)

// Logical joins two or more parts with AND or OR. The parser puts a run of the same operator into one
// node (a AND b AND c has three parts) but keeps a parenthesised run as its own part, so printing gives
// back the same tree.
type Logical struct {
	Op    LogicalOp
	Parts []Expr
}

// Negation is NOT X. Under the hub's three-valued logic NOT of undefined stays undefined.
type Negation struct{ X Expr }

// CompareOp is a comparison operator. "<>" is read as Ne.
type CompareOp string

// The comparison operators.
const (
	Eq CompareOp = "="
	Ne CompareOp = "!="
	Lt CompareOp = "<"
	Le CompareOp = "<="
	Gt CompareOp = ">"
	Ge CompareOp = ">="
)

// Comparison is Left Op Right.
type Comparison struct {
	Op          CompareOp
	Left, Right Expr
}

// InList is X IN [values...], or X NIN [values...] when Negated. Values are constants (String, Number,
// Bool, Null, Undefined or Array).
type InList struct {
	X       Expr
	Values  []Expr
	Negated bool
}

// ArithOp is one of + - * / %.
type ArithOp byte

// Arithmetic is Left Op Right over numbers.
type Arithmetic struct {
	Op          ArithOp
	Left, Right Expr
}

// Minus is unary minus applied to a non-constant; the parser folds -<number> into a Number.
type Minus struct{ X Expr }

// Call is a function call. Name is upper case (function names are case-insensitive); the parser only
// produces the functions twin queries support: IS_DEFINED, STARTSWITH and ENDSWITH.
type Call struct {
	Name string
	Args []Expr
}

// Path is a property path such as tags.region or properties.reported.$version. Segments keep the case
// they were written in; lookup is exact first, then case-insensitive.
type Path struct{ Segments []string }

// String is a string constant (already unescaped).
type String struct{ Value string }

// Number is a numeric constant. Hex literals are stored by value, so 0x10 prints as 16.
type Number struct{ Value float64 }

// Bool is true or false.
type Bool struct{ Value bool }

// Null is the constant null: a property that is present with a JSON null value.
type Null struct{}

// Undefined is the constant undefined: a property that is absent.
type Undefined struct{}

// Array is a list constant, [c1, c2, ...].
type Array struct{ Elems []Expr }

func (All) node()        {}
func (Logical) node()    {}
func (Negation) node()   {}
func (Comparison) node() {}
func (InList) node()     {}
func (Arithmetic) node() {}
func (Minus) node()      {}
func (Call) node()       {}
func (Path) node()       {}
func (String) node()     {}
func (Number) node()     {}
func (Bool) node()       {}
func (Null) node()       {}
func (Undefined) node()  {}
func (Array) node()      {}

// NewPath splits a dotted path such as "tags.region" into a Path. It does no validation: a segment that
// is a reserved word or not a plain identifier is printed in [[...]] escapes.
func NewPath(dotted string) Path {
	return Path{Segments: strings.Split(dotted, ".")}
}

// String renders the path as it would appear in a condition.
func (p Path) String() string {
	var b strings.Builder
	writePath(&b, p)
	return b.String()
}

// Equal reports whether two trees are the same. A nil Expr equals only nil.
func Equal(a, b Expr) bool {
	return reflect.DeepEqual(a, b)
}
