package plan

import (
	"errors"
	"fmt"

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
		// Constructs that parse but probably do not select what the author meant, such as a bare
		// word where a quoted string was intended or double quotes a hub query may refuse.
		for _, w := range query.Warnings(s) {
			c.conditionProblem(Warning, n, r, "", w)
		}
		return
	}
	var qe *query.Error
	if !errors.As(err, &qe) {
		c.add(Error, r.node, r.path, "", "invalid %s: %v", what, err)
		return
	}
	c.conditionProblem(Error, n, r, "invalid "+what, qe)
}

// conditionProblem reports qe, positioned inside the condition's scalar n, at its place in the file,
// after prefix ("invalid target: ..."; none for a warning, whose path already names the condition).
func (c *checker) conditionProblem(sev Severity, n *yaml.Node, r ref, prefix string, qe *query.Error) {
	line, col, exact := c.valuePos(n, qe.Offset)
	hint := ""
	if !exact {
		hint = "the line and column are where the string starts; count the column inside the condition from there"
	}
	msg := fmt.Sprintf("%s (column %d of the condition)", qe.Msg, qe.Offset+1)
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	c.addAt(sev, line, col, r.path, hint, msg)
}
