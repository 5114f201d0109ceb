package query

import (
	"strings"
)

// MaxLength is the hub's limit on the length of a query or job condition, in characters. Parse and
// ParseCondition accept longer text (they stay linear in time and memory); callers that build
// conditions for the hub check the limit themselves.
const MaxLength = 8192

// maxDepth bounds the depth of a tree (chained arithmetic counts one level per operator), so that no
// input can exhaust the stack of the printer or the evaluator. maxNesting bounds the parser's own
// recursion (parentheses, NOT, unary minus, lists, calls, operators); it is twice maxDepth plus slack
// because the printer may add one pair of parentheses per node, and what it prints must parse again.
const (
	maxDepth   = 128
	maxNesting = 2*maxDepth + 4
)

// keywords are the reserved words of the query language, upper case. A path segment spelled like one
// must be escaped as [[name]]; the reference confirms this for GROUP only and assumes it for the rest.
var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "AND": true, "OR": true, "NOT": true, "IN": true,
	"NIN": true, "AS": true, "GROUP": true, "BY": true, "TOP": true, "ORDER": true,
}

// literalWords are the constant keywords. After a dot they are read as property names.
var literalWords = map[string]bool{"TRUE": true, "FALSE": true, "NULL": true, "UNDEFINED": true}

func isKeyword(s string) bool {
	if len(s) > 9 {
		return false
	}
	var buf [9]byte
	return keywords[string(upper(buf[:0], s))]
}

func isLiteralWord(s string) bool {
	if len(s) > 9 {
		return false
	}
	var buf [9]byte
	return literalWords[string(upper(buf[:0], s))]
}

func upper(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

type parser struct {
	src   string
	lx    lexer
	tok   token
	prev  token // the token before tok, for "after X" messages
	depth int
	paths []posPath // every path in the order parsed, for semantic checks of whole queries
}

type posPath struct {
	pos  int
	path Path
}

func newParser(src string) (*parser, error) {
	p := &parser{src: src, lx: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parser) advance() error {
	p.prev = p.tok
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// is reports whether the current token is the keyword kw (upper case), case-insensitively.
func (p *parser) is(kw string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.val, kw)
}

func (p *parser) found() string { return p.tok.describe(p.src) }

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return errorf(p.tok.pos, "condition nested too deeply (more than %d levels)", maxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// ParseCondition parses a bare condition: what follows WHERE in a query, and what a job's
// queryCondition holds. The lone "*" (spaces around allowed) gives All{}. Every error is a *Error.
func ParseCondition(src string) (Expr, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	if p.tok.kind == tStar {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind == tEOF {
			return All{}, nil
		}
		return nil, errorf(p.prev.pos, "'*' (all devices) must be the whole condition")
	}
	switch {
	case p.is("SELECT"):
		return nil, errorf(p.tok.pos, "a condition is only the part after WHERE: remove 'SELECT ... WHERE'")
	case p.is("FROM"):
		return nil, errorf(p.tok.pos, "a condition is only the part after WHERE: remove 'FROM ... WHERE'")
	case p.is("WHERE"):
		return nil, errorf(p.tok.pos, "a condition is only the part after WHERE: remove the leading WHERE")
	}
	if p.tok.kind == tEOF {
		return nil, errorf(p.tok.pos, "expected a condition, found end of input (use '*' for all devices)")
	}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.trailing("end of condition")
	}
	if err := checkDepth(e); err != nil {
		return nil, err
	}
	return e, nil
}

// checkDepth rejects a tree deeper than maxDepth. The parser's nesting limit already bounds the work.
func checkDepth(e Expr) error {
	if depth(e) > maxDepth {
		return errorf(0, "condition nested too deeply (more than %d levels)", maxDepth)
	}
	return nil
}

func depth(e Expr) int {
	d := 0
	children := func(es ...Expr) {
		for _, c := range es {
			d = max(d, depth(c))
		}
	}
	switch e := e.(type) {
	case Logical:
		children(e.Parts...)
	case Negation:
		children(e.X)
	case Comparison:
		children(e.Left, e.Right)
	case InList:
		children(e.X)
		children(e.Values...)
	case Arithmetic:
		children(e.Left, e.Right)
	case Minus:
		children(e.X)
	case Call:
		children(e.Args...)
	case Array:
		children(e.Elems...)
	}
	return d + 1
}

// trailing explains a token left over after a complete condition.
func (p *parser) trailing(what string) error {
	t := p.tok
	switch {
	case p.is("ORDER"):
		return errorf(t.pos, "ORDER BY is not supported by IoT Hub queries: sort the results yourself")
	case p.is("LIKE"):
		return errorf(t.pos, "LIKE is not supported by IoT Hub queries: use STARTSWITH(path, 'prefix') or ENDSWITH(path, 'suffix')")
	case p.is("BETWEEN"):
		return errorf(t.pos, "BETWEEN is not supported: write x >= a AND x <= b")
	case p.is("IS"):
		return errorf(t.pos, "IS is not supported: use IS_DEFINED(path), or compare with = null")
	case p.is("NOT"):
		return errorf(t.pos, "NOT cannot follow a value: use NIN for 'not in', or put NOT before the condition")
	case t.kind == tString && p.prev.kind == tString && p.prev.end == t.pos:
		return errorf(t.pos, `two strings in a row: escape a quote inside a string as \' ('O\'Brien'), not by doubling it`)
	case t.kind == tEq || t.kind == tNe || t.kind == tLt || t.kind == tLe || t.kind == tGt || t.kind == tGe:
		return errorf(t.pos, "comparisons cannot be chained: join them with AND or OR")
	}
	return errorf(t.pos, "expected AND, OR or %s, found %s", what, p.found())
}

func (p *parser) parseOr() (Expr, error) { return p.parseLogical(OpOr, p.parseAnd) }

func (p *parser) parseAnd() (Expr, error) { return p.parseLogical(OpAnd, p.parseNot) }

// parseLogical reads a run of operands joined by op into one Logical node; a single operand is
// returned as it is.
func (p *parser) parseLogical(op LogicalOp, operand func() (Expr, error)) (Expr, error) {
	first, err := operand()
	if err != nil || !p.is(string(op)) {
		return first, err
	}
	parts := []Expr{first}
	for p.is(string(op)) {
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := operand()
		if err != nil {
			return nil, err
		}
		parts = append(parts, e)
	}
	return Logical{Op: op, Parts: parts}, nil
}

func (p *parser) parseNot() (Expr, error) {
	return p.parsePrefix(func() bool { return p.is("NOT") }, p.parsePredicate, func(x Expr) Expr { return Negation{X: x} })
}

// parsePrefix parses a run of a prefix operator (NOT, unary minus), which isOp recognises; each one
// deepens the tree by one and wraps what follows it. Without one, it parses an operand.
func (p *parser) parsePrefix(isOp func() bool, operand func() (Expr, error), wrap func(Expr) Expr) (Expr, error) {
	if !isOp() {
		return operand()
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parsePrefix(isOp, operand, wrap)
	if err != nil {
		return nil, err
	}
	return wrap(x), nil
}

var compareOps = map[tokKind]CompareOp{tEq: Eq, tNe: Ne, tLt: Lt, tLe: Le, tGt: Gt, tGe: Ge}

func (p *parser) parsePredicate() (Expr, error) {
	left, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	if op, ok := compareOps[p.tok.kind]; ok {
		if err := p.advance(); err != nil {
			return nil, err
		}
		right, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		return Comparison{Op: op, Left: left, Right: right}, nil
	}
	if p.is("IN") || p.is("NIN") {
		neg := p.is("NIN")
		if err := p.advance(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tLParen:
			return nil, errorf(p.tok.pos, "IN takes a list in square brackets, not parentheses: IN ['a', 'b']")
		case tLBrack:
		default:
			return nil, errorf(p.tok.pos, "expected a list such as ['a', 'b'] after %s, found %s", p.prev.describe(p.src), p.found())
		}
		arr, err := p.parseArray()
		if err != nil {
			return nil, err
		}
		return InList{X: left, Values: arr.Elems, Negated: neg}, nil
	}
	if p.is("NOT") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.is("IN") {
			return nil, errorf(p.prev.pos, "NOT IN is not supported: use NIN ['a', 'b']")
		}
		return nil, errorf(p.prev.pos, "NOT cannot follow a value: put it before the condition")
	}
	return left, nil
}

var arithOps = map[tokKind]ArithOp{tPlus: '+', tMinus: '-', tStar: '*', tSlash: '/', tPercent: '%'}

func (p *parser) parseAdditive() (Expr, error) {
	return p.parseBinary(tPlus, tMinus, p.parseMult)
}

func (p *parser) parseMult() (Expr, error) {
	return p.parseBinary(tStar, tSlash, p.parseUnary, tPercent)
}

// parseBinary parses a left-associative chain of operators; each operator deepens the tree by one.
func (p *parser) parseBinary(a, b tokKind, operand func() (Expr, error), more ...tokKind) (Expr, error) {
	left, err := operand()
	if err != nil {
		return nil, err
	}
	depth := p.depth
	defer func() { p.depth = depth }()
	for p.tok.kind == a || p.tok.kind == b || (len(more) > 0 && p.tok.kind == more[0]) {
		op := arithOps[p.tok.kind]
		if err := p.enter(); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		right, err := operand()
		if err != nil {
			return nil, err
		}
		left = Arithmetic{Op: op, Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) parseUnary() (Expr, error) {
	return p.parsePrefix(func() bool { return p.tok.kind == tMinus }, p.parsePrimary, negate)
}

// negate is unary minus, folded into a number literal.
func negate(x Expr) Expr {
	if n, ok := x.(Number); ok {
		return Number{Value: -n.Value}
	}
	return Minus{X: x}
}

// expectedValue builds the error for a missing operand.
func (p *parser) expectedValue() error {
	t := p.tok
	if p.prev.kind == tEOF && p.prev.pos == 0 && p.prev.end == 0 {
		return errorf(t.pos, "expected a condition, found %s", p.found())
	}
	after := p.prev.describe(p.src)
	if t.kind == tEOF {
		return errorf(t.pos, "expected a value after %s", after)
	}
	return errorf(t.pos, "expected a value after %s, found %s", after, p.found())
}

func (p *parser) parsePrimary() (Expr, error) {
	t := p.tok
	switch t.kind {
	case tString:
		return String{Value: t.val}, p.advance()
	case tNumber:
		return Number{Value: t.num}, p.advance()
	case tLBrack:
		return p.parseArray()
	case tLParen:
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, errorf(p.tok.pos, "expected ')' to close the '(' at column %d, found %s", t.pos+1, p.found())
		}
		return e, p.advance()
	case tIdent:
		if c, ok := p.literalWord(); ok {
			return c, p.advance()
		}
		if isKeyword(t.val) {
			return nil, p.expectedValue()
		}
		// Look ahead for a call: name followed by '('.
		save := p.lx
		next, err := p.lx.next()
		p.lx = save
		if err == nil && next.kind == tLParen {
			return p.parseCall()
		}
		return p.parsePath()
	}
	return nil, p.expectedValue()
}

// literalWord reads true/false/null/undefined at the current token.
func (p *parser) literalWord() (Expr, bool) {
	switch strings.ToUpper(p.tok.val) {
	case "TRUE":
		return Bool{Value: true}, true
	case "FALSE":
		return Bool{Value: false}, true
	case "NULL":
		return Null{}, true
	case "UNDEFINED":
		return Undefined{}, true
	}
	return nil, false
}

// parseArray parses a list constant starting at '['. Elements are constants; the reference's grammar
// asks for two or more but its own examples use one, so one is accepted. An empty list is an error.
func (p *parser) parseArray() (Array, error) {
	open := p.tok
	if err := p.enter(); err != nil {
		return Array{}, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return Array{}, err
	}
	if p.tok.kind == tRBrack {
		return Array{}, errorf(p.tok.pos, "expected a value in the list: an empty list is not allowed")
	}
	var elems []Expr
	for {
		c, err := p.parseConstant()
		if err != nil {
			return Array{}, err
		}
		elems = append(elems, c)
		switch p.tok.kind {
		case tComma:
			if err := p.advance(); err != nil {
				return Array{}, err
			}
			if p.tok.kind == tRBrack {
				return Array{}, errorf(p.tok.pos, "expected a value after ',' in the list, found ']'")
			}
			continue
		case tRBrack:
			return Array{Elems: elems}, p.advance()
		}
		return Array{}, errorf(p.tok.pos, "expected ',' or ']' in the list opened at column %d, found %s", open.pos+1, p.found())
	}
}

func (p *parser) parseConstant() (Expr, error) {
	t := p.tok
	switch t.kind {
	case tString:
		return String{Value: t.val}, p.advance()
	case tNumber:
		return Number{Value: t.num}, p.advance()
	case tMinus:
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tNumber {
			return nil, errorf(p.tok.pos, "expected a number after '-', found %s", p.found())
		}
		n := p.tok.num
		return Number{Value: -n}, p.advance()
	case tLBrack:
		return p.parseArray()
	case tIdent:
		if c, ok := p.literalWord(); ok {
			return c, p.advance()
		}
		return nil, errorf(t.pos, "a list holds only constants (strings, numbers, true, false, null), found %s", p.found())
	}
	return nil, errorf(t.pos, "expected a constant in the list, found %s", p.found())
}

// functions maps the supported function names to their arity.
var functions = map[string]int{"IS_DEFINED": 1, "STARTSWITH": 2, "ENDSWITH": 2}

// routingOnly are functions documented for message routing queries only; whether twin queries take
// them is unconfirmed, so they are rejected (a job whose condition fails to parse fails on the hub only
// once it runs, which is worse than an early error).
var routingOnly = map[string]bool{
	"IS_STRING": true, "IS_NUMBER": true, "IS_BOOL": true, "IS_OBJECT": true, "IS_NULL": true,
	"IS_ARRAY": true, "IS_PRIMITIVE": true, "LOWER": true, "UPPER": true, "LENGTH": true, "SUBSTRING": true,
	"INDEX_OF": true, "CONCAT": true, "AS_NUMBER": true, "ABS": true, "CEILING": true, "FLOOR": true,
	"EXP": true, "LOG": true, "LOG10": true, "POWER": true, "ROUND": true, "SIGN": true, "SQUARE": true,
	"SQRT": true, "TRUNC": true,
}

func (p *parser) parseCall() (Expr, error) {
	nameTok := p.tok
	name := strings.ToUpper(nameTok.val)
	arity, ok := functions[name]
	if !ok {
		switch {
		case name == "STARTS_WITH":
			return nil, errorf(nameTok.pos, "STARTS_WITH is rejected by IoT Hub twin queries: use STARTSWITH")
		case name == "ENDS_WITH":
			return nil, errorf(nameTok.pos, "ENDS_WITH is not supported in twin queries: use ENDSWITH")
		case name == "CONTAINS":
			return nil, errorf(nameTok.pos, "CONTAINS does not work in IoT Hub twin queries: use STARTSWITH, ENDSWITH or IN [...]")
		case routingOnly[name]:
			return nil, errorf(nameTok.pos, "%s is a message-routing function, not supported in twin queries (use IS_DEFINED, STARTSWITH or ENDSWITH)", name)
		case name == "COUNT" || name == "SUM" || name == "AVG" || name == "MIN" || name == "MAX":
			return nil, errorf(nameTok.pos, "aggregate %s is allowed only in the SELECT list", name)
		}
		return nil, errorf(nameTok.pos, "unknown function %s: twin queries support IS_DEFINED, STARTSWITH and ENDSWITH", clip(nameTok.val))
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil { // name
		return nil, err
	}
	open := p.tok
	if err := p.advance(); err != nil { // (
		return nil, err
	}
	var args []Expr
	if p.tok.kind != tRParen {
		for {
			a, err := p.parseAdditive()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.tok.kind != tComma {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	if p.tok.kind != tRParen {
		return nil, errorf(p.tok.pos, "expected ',' or ')' to close the '(' at column %d, found %s", open.pos+1, p.found())
	}
	if len(args) != arity {
		return nil, errorf(nameTok.pos, "%s takes %d argument%s, got %d", name, arity, plural(arity), len(args))
	}
	if name == "IS_DEFINED" {
		if _, ok := args[0].(Path); !ok {
			return nil, errorf(open.end, "IS_DEFINED takes a property path, such as IS_DEFINED(tags.region)")
		}
	}
	return Call{Name: name, Args: args}, p.advance()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// parsePath parses a property path at an identifier.
func (p *parser) parsePath() (Path, error) {
	start := p.tok
	segs := []string{start.val}
	if err := p.advance(); err != nil {
		return Path{}, err
	}
	for p.tok.kind == tDot {
		if err := p.advance(); err != nil {
			return Path{}, err
		}
		t := p.tok
		switch t.kind {
		case tSegment:
			segs = append(segs, t.val)
		case tIdent:
			if isKeyword(t.val) {
				return Path{}, errorf(t.pos, "'%s' is a reserved word: write the property as [[%s]]", t.val, t.val)
			}
			segs = append(segs, t.val)
		default:
			return Path{}, errorf(t.pos, "expected a property name after '.', found %s", p.found())
		}
		if err := p.advance(); err != nil {
			return Path{}, err
		}
	}
	path := Path{Segments: segs}
	p.paths = append(p.paths, posPath{pos: start.pos, path: path})
	return path, nil
}
