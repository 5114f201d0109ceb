package plan

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/iot-rollout/rollout/query"
)

// condition checks that a condition parses as IoT Hub's WHERE syntax; "*" means every device. A
// syntax error is reported where it sits in the file: the parser's byte offset into the decoded string
// is mapped back through the scalar's quoting, escapes and line folding (see valuePos). The message
// also gives the column inside the condition, which is the only exact position when the mapping could
// not be trusted.
func (c *checker) condition(r ref, what string) {
	s, ok := str(r)
	n := deref(r.node)
	if !ok {
		return
	}
	if _, done := c.conds[n]; done {
		return // a defaults condition is shared by every wave; check it once
	}
	c.conds[n] = nil
	if isAll(s) {
		c.conds[n] = query.All{}
		return
	}
	if s == "" {
		return // the schema reported it
	}
	e, err := query.ParseCondition(s)
	if err == nil {
		c.conds[n] = e
		// A compared path that starts with no twin property selects nothing: tags.ring = canary
		// (the quotes forgotten) or ring = 'canary' (tags. forgotten). In a target or the fleet the
		// wave then has no device, so that is an error; a verify condition that never holds only
		// fails the wave, so there it stays a warning.
		sev := Error
		if what == "verify condition" {
			sev = Warning
		}
		stray := map[int]bool{}
		for _, w := range strayWords(s, e) {
			stray[w.off] = true
			c.conditionProblem(sev, n, r, "", w.problem(s))
		}
		// Other constructs that parse but probably do not do what the author meant, such as double
		// quotes a hub query may refuse.
		for _, w := range query.Warnings(s) {
			if !stray[w.Offset] {
				c.conditionProblem(Warning, n, r, "", &problem{Error: *w})
			}
		}
		return
	}
	var qe *query.Error
	if !errors.As(err, &qe) {
		c.add(Error, r.node, r.path, "", "invalid %s: %v", what, err)
		return
	}
	c.conditionProblem(Error, n, r, "invalid "+what, &problem{Error: *qe})
}

// problem is a finding inside a condition, positioned like a parse error, with what to do about it.
type problem struct {
	query.Error
	hint string
}

// conditionProblem reports qe, positioned inside the condition's scalar n, at its place in the file,
// after prefix ("invalid target: ..."; none for a warning, whose path already names the condition).
func (c *checker) conditionProblem(sev Severity, n *yaml.Node, r ref, prefix string, qe *problem) {
	line, col, exact := c.valuePos(n, qe.Offset)
	hint := qe.hint
	if !exact {
		hint = strings.TrimPrefix(hint+"; the line and column are where the string starts; count the column inside the condition from there", "; ")
	}
	msg := fmt.Sprintf("%s (column %d of the condition)", qe.Msg, qe.Offset+1)
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	c.addAt(sev, line, col, r.path, hint, msg)
}

// twinRoots are the top-level properties of a device or module twin, in lower case (property names
// in conditions are matched without regard to case): every property path in a condition that can
// select a device starts with one of them.
var twinRoots = map[string]bool{
	"deviceid": true, "moduleid": true, "etag": true, "deviceetag": true, "version": true, "status": true,
	"statusreason": true, "statusupdatetime": true, "connectionstate": true, "lastactivitytime": true,
	"cloudtodevicemessagecount": true, "authenticationtype": true, "x509thumbprint": true,
	"capabilities": true, "devicescope": true, "parentscopes": true, "modelid": true, "tags": true,
	"properties": true,
}

// strayWord is a compared property path whose first segment, word, names no twin property; off is
// its byte offset in the condition, and value says it stands after the comparison operator (where a
// quoted string was probably meant).
type strayWord struct {
	word  string
	path  string // the whole path: word, or word.more
	off   int
	value bool
}

func (w strayWord) problem(cond string) *problem {
	if w.value {
		fixed := cond[:w.off] + query.Quote(w.path) + cond[w.off+len(w.path):]
		if len(fixed) > 50 {
			fixed = query.Quote(w.path)
		}
		return &problem{Error: query.Error{Offset: w.off, Msg: fmt.Sprintf(
			"%s is not quoted, so it is read as a property, and twins have no such property: the comparison is true for no device", w.path)},
			hint: "quote it to compare with a string: " + fixed}
	}
	return &problem{Error: query.Error{Offset: w.off, Msg: fmt.Sprintf(
		"%s is not a twin property, so the comparison is true for no device (paths start at tags, properties.desired, properties.reported or a twin field such as deviceId)", w.word)},
		hint: fmt.Sprintf("did you mean tags.%s?", w.path)}
}

// strayWords finds the compared paths of e (a parse of cond) that start with no twin property, such as
// canary in tags.ring = canary (the quotes forgotten) and ring in ring = 'canary' (tags. forgotten), in
// the order they appear in cond.
func strayWords(cond string, e query.Expr) []strayWord {
	words := map[string]bool{}
	var operand func(x query.Expr)
	operand = func(x query.Expr) {
		switch x := x.(type) {
		case query.Path:
			if len(x.Segments) > 0 && !twinRoots[strings.ToLower(x.Segments[0])] {
				words[x.Segments[0]] = true
			}
		case query.Arithmetic:
			operand(x.Left)
			operand(x.Right)
		case query.Minus:
			operand(x.X)
		}
	}
	var walk func(x query.Expr)
	walk = func(x query.Expr) {
		switch x := x.(type) {
		case query.Logical:
			for _, p := range x.Parts {
				walk(p)
			}
		case query.Negation:
			walk(x.X)
		case query.Comparison:
			operand(x.Left)
			operand(x.Right)
		case query.InList:
			operand(x.X)
		}
	}
	walk(e)
	if len(words) == 0 {
		return nil
	}
	// Find where each word starts a path: an identifier outside strings, not after '.', not a
	// function name.
	var out []strayWord
	prev := byte(0) // the last character before the current token that is not a space
	for i := 0; i < len(cond); {
		ch := cond[i]
		switch {
		case ch == '\'' || ch == '"':
			j := i + 1
			for j < len(cond) && cond[j] != ch {
				if cond[j] == '\\' {
					j++
				}
				j++
			}
			i, prev = j+1, ch
			continue
		case isIdentStart(ch):
			j := i + 1
			for j < len(cond) && (isIdentStart(cond[j]) || cond[j] >= '0' && cond[j] <= '9') {
				j++
			}
			word := cond[i:j]
			k := j
			for k < len(cond) && cond[k] == ' ' {
				k++
			}
			if words[word] && prev != '.' && (k == len(cond) || cond[k] != '(') {
				// The whole path, which is what the quotes were meant to hold.
				for j < len(cond)-1 && cond[j] == '.' && isIdentStart(cond[j+1]) {
					j += 2
					for j < len(cond) && (isIdentStart(cond[j]) || cond[j] >= '0' && cond[j] <= '9') {
						j++
					}
				}
				out = append(out, strayWord{word: word, path: cond[i:j], off: i, value: prev == '=' || prev == '<' || prev == '>'})
			}
			i, prev = j, 'a'
			continue
		case ch == '[' && i+1 < len(cond) && cond[i+1] == '[' && prev == '.':
			if end := strings.Index(cond[i+2:], "]]"); end >= 0 {
				i, prev = i+2+end+2, 'a'
				continue
			}
		}
		if ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' {
			prev = ch
		}
		i++
	}
	return out
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c|0x20 >= 'a' && c|0x20 <= 'z')
}
