package query

import "strings"

// Warnings lists constructs in src that parse but that the hub may not take the way the documentation
// says: double-quoted strings (documented, yet reported failing in a hub query; the printer always
// writes single quotes) and ENDSWITH (renamed alongside STARTSWITH but never independently confirmed).
// Each warning is positioned like a parse error. It reports nothing for text that does not lex; call
// ParseCondition or Parse for errors.
func Warnings(src string) []*Error {
	var out []*Error
	lx := lexer{src: src}
	for {
		t, err := lx.next()
		if err != nil || t.kind == tEOF {
			return out
		}
		switch {
		case t.kind == tString && src[t.pos] == '"':
			out = append(out, errorf(t.pos, "double-quoted string: IoT Hub documents double quotes but they were reported failing; prefer single quotes"))
		case t.kind == tIdent && strings.EqualFold(t.val, "ENDSWITH"):
			out = append(out, errorf(t.pos, "ENDSWITH is not independently confirmed to work in twin queries (STARTSWITH is)"))
		}
	}
}
