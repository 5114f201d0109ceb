package plan

import (
	"errors"
	"fmt"

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
		return
	}
	var qe *query.Error
	if !errors.As(err, &qe) {
		c.add(Error, r.node, r.path, "", "invalid %s: %v", what, err)
		return
	}
	line, col, exact := c.valuePos(n, qe.Offset)
	hint := ""
	if !exact {
		hint = "the line and column are where the string starts; count the column inside the condition from there"
	}
	c.addAt(Error, line, col, r.path, hint, fmt.Sprintf("invalid %s: %s (column %d of the condition)", what, qe.Msg, qe.Offset+1))
}
