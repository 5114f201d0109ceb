package plan

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// syntaxProblem is a YAML syntax error located by scanning the source: where the problem is, what is
// wrong and what to do.
type syntaxProblem struct {
	line, col int // 1-based; col counts runes
	msg, hint string
}

// opener is an unclosed bracket or quote: its character, where it is, and the indentation of the
// line it opens on.
type opener struct {
	ch           rune
	line, col    int
	indent       int
	continuation bool // the quote has run onto a later line
}

// block is one open level of block structure: the indentation of a key or a "- " item, and whether the
// line already gave it a value (so nothing may be nested under it).
type block struct {
	indent   int
	line     int
	key      string
	hasValue bool
	scalar   bool // a plain value on its own line, which may go on over more lines
	item     bool // a "- " list item rather than a key
}

// keyLine matches the start of a block mapping entry: an optional run of "- " items, then a plain or
// quoted key followed by ':' and a space or the end of the line.
var keyLine = regexp.MustCompile(`^((?:- +)*)("[^"]*"|'[^']*'|(?:[^\s:#{}\[\],'"&*!|>%@` + "`" + `?-]|[?:-]\S)` + plainRest + `|[?:-])\s*:(?:\s|$)`)

// plainRest is the rest of a plain key: '#' is text unless a space precedes it; the key ends at the
// first ':' followed by a space or the end of the line, as the match is the shortest.
const plainRest = `(?:\S|[ \t]+[^#\s])*?`

// blockIndicator matches a block scalar header (| or > with optional indicators, then an optional comment).
var blockIndicator = regexp.MustCompile(`^[|>][0-9+-]*\s*(#.*)?$`)

// scanSyntax looks through YAML source for the usual causes of a syntax error, which yaml.v3 reports
// only by the line of the enclosing construct: a bracket or quote that is never closed or is closed by
// the wrong character, text after a closing quote, a tab in the indentation, a line indented to no
// level above it, a key nested under a key that already has a value, a line without ':' among keys,
// and ': ' inside a plain value. It returns the first problem in document order, or false when it
// finds none; then the caller keeps yaml.v3's own message. It must find nothing in YAML that parses
// (TestScanSyntaxQuietOnValidYAML and FuzzScanSyntax check this): its finding replaces the parser's.
func scanSyntax(src []byte) (syntaxProblem, bool) {
	s := &syntaxScanner{}
	// YAML breaks lines at \r\n, \n and a lone \r.
	lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(string(src), "\r\n", "\n"), "\r", "\n"), "\n")
	for i, text := range lines {
		if s.suspect != nil && s.closedAt != 0 && i+1 > s.closedAt {
			s.suspect = nil
		}
		if p, ok := s.line(i+1, []rune(text)); ok {
			if s.suspect != nil {
				return *s.suspect, true // the bracket or quote that ran on is the likelier cause
			}
			return p, true
		}
	}
	return s.eof()
}

type syntaxScanner struct {
	flow        []opener // open flow brackets, innermost last
	quote       *opener  // the open quoted scalar, if any
	blocks      []block  // open block levels, outermost first
	scalarOwner int      // inside a block scalar: the indentation of the line that opened it
	inScalar    bool
	complex     bool // "? " keys, which the indentation checks do not model
	scalarDoc   bool // the document is a scalar: nothing to check
	// suspect is a bracket or quote that ran on to a line that looks like the next key. YAML allows
	// that, so it is reported only when it is never closed, or when a problem follows while it is
	// open or on the line where it closed (closedAt).
	suspect   *syntaxProblem
	closedAt  int
	continued bool // the current line continues a plain scalar
	flowPlain bool // the line above ended inside a plain scalar within brackets
}

func indentOf(text []rune) int {
	n := 0
	for n < len(text) && text[n] == ' ' {
		n++
	}
	return n
}

func (s *syntaxScanner) line(num int, text []rune) (syntaxProblem, bool) {
	if s.scalarDoc {
		return syntaxProblem{}, false
	}
	ind := indentOf(text)
	rest := strings.TrimSpace(string(text))
	blank := rest == "" || strings.HasPrefix(rest, "#")
	if s.inScalar {
		if blank || ind > s.scalarOwner {
			return syntaxProblem{}, false
		}
		s.inScalar = false
	}
	if s.quote == nil && len(s.flow) == 0 {
		if rest == "---" || strings.HasPrefix(rest, "--- ") || rest == "..." || strings.HasPrefix(string(text), "%") {
			s.blocks = nil
			return syntaxProblem{}, false
		}
		if blank {
			return syntaxProblem{}, false
		}
		if ind < len(text) && text[ind] == '\t' {
			// A tab before a key or an item breaks the structure; before text that continues a
			// value it is only a separator.
			body := strings.TrimLeft(string(text), " \t")
			if keyLine.MatchString(body) || body == "-" || strings.HasPrefix(body, "- ") {
				return syntaxProblem{num, ind + 1, "this line is indented with a tab", "indent YAML with spaces, not tabs"}, true
			}
			return syntaxProblem{}, false
		}
		s.continued = false
		if p, ok := s.indentation(num, text, ind); ok {
			return p, true
		}
		if s.continued || s.scalarDoc {
			return syntaxProblem{}, false
		}
	} else if s.quote != nil && !blank {
		// A quote that runs onto a line that looks like the next key was probably never closed.
		if ind <= s.quote.indent && keyLine.MatchString(string(text[ind:])) && s.suspect == nil {
			p := s.unclosed(*s.quote)
			s.suspect, s.closedAt = &p, 0
		}
		s.quote.continuation = true
	} else if len(s.flow) > 0 && !blank {
		if o := s.flow[0]; ind <= o.indent && keyLine.MatchString(string(text[ind:])) && s.suspect == nil {
			p := s.unclosed(s.flow[len(s.flow)-1])
			s.suspect, s.closedAt = &p, 0
		}
	}
	return s.chars(num, text, ind)
}

// chars follows brackets and quotes along one line.
func (s *syntaxScanner) chars(num int, text []rune, ind int) (syntaxProblem, bool) {
	start := true // a token may start here
	// Inside a plain (unquoted) scalar quotes and spaces are ordinary text; in brackets one may go on
	// from the line above.
	plain := s.flowPlain && len(s.flow) > 0
	defer func() { s.flowPlain = plain && len(s.flow) > 0 }()
	for i := 0; i < len(text); i++ {
		ch := text[i]
		if plain {
			flowEnd := len(s.flow) > 0 && strings.ContainsRune(",[]{}", ch)
			keyEnd := ch == ':' && (i+1 == len(text) || text[i+1] == ' ' || len(s.flow) > 0 && strings.ContainsRune(",[]{}", text[i+1]))
			comment := ch == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t')
			if !flowEnd && !keyEnd && !comment {
				continue
			}
			plain = false
		}
		if q := s.quote; q != nil {
			switch {
			case q.ch == '"' && ch == '\\':
				i++
			case q.ch == '\'' && ch == '\'' && i+1 < len(text) && text[i+1] == '\'':
				i++
			case ch == q.ch:
				s.quote = nil
				if s.suspect != nil && len(s.flow) == 0 {
					s.closedAt = num
				}
				j := i + 1
				for j < len(text) && (text[j] == ' ' || text[j] == '\t') {
					j++
				}
				// (A document that is only a scalar is left alone: the parser reads it leniently.)
				if j < len(text) && (len(s.blocks) > 0 || len(s.flow) > 0) && !strings.ContainsRune(":#", text[j]) && (len(s.flow) == 0 || !strings.ContainsRune(",]}", text[j])) {
					hint := `inside double quotes, write \" for a quote character`
					if q.ch == '\'' {
						hint = "inside single quotes, write '' for a quote character, or put the whole value in double quotes"
					}
					return syntaxProblem{num, i + 1, fmt.Sprintf("this %c ends the string that starts at line %d, column %d, but more text follows it", ch, q.line, q.col), hint}, true
				}
				if j < len(text) && text[j] == '#' {
					return syntaxProblem{}, false // the parser takes a # right after a closing quote as a comment
				}
				start = false
			}
			continue
		}
		switch {
		case ch == ' ' || ch == '\t':
			start = true
			continue
		case ch == '#' && (i == 0 || strings.ContainsRune(" \t]}", text[i-1])):
			return syntaxProblem{}, false // a comment (the parser takes one right after a bracket too)
		case start && (ch == '"' || ch == '\''):
			s.quote = &opener{ch: ch, line: num, col: i + 1, indent: ind}
		case (start || len(s.flow) > 0) && (ch == '{' || ch == '['):
			s.flow = append(s.flow, opener{ch: ch, line: num, col: i + 1, indent: ind})
			start = true
			continue
		case ch == '}' || ch == ']':
			if len(s.flow) == 0 {
				if start {
					return syntaxProblem{num, i + 1, fmt.Sprintf("this %c closes nothing", ch), fmt.Sprintf("remove it, or put the value in quotes if the %c is part of it", ch)}, true
				}
				continue
			}
			o := s.flow[len(s.flow)-1]
			if want := closer(o.ch); ch != want {
				for _, outer := range s.flow[:len(s.flow)-1] {
					if closer(outer.ch) == ch {
						// It closes an outer bracket: the inner one was left open.
						return syntaxProblem{o.line, o.col, fmt.Sprintf("this %c is never closed: add %c before the %c at line %d, column %d", o.ch, want, ch, num, i+1),
							fmt.Sprintf("every %c needs its %c", o.ch, want)}, true
					}
				}
				return syntaxProblem{num, i + 1, fmt.Sprintf("this %c does not match the %c at line %d, column %d", ch, o.ch, o.line, o.col),
					fmt.Sprintf("close %c with %c", o.ch, want)}, true
			}
			s.flow = s.flow[:len(s.flow)-1]
			if s.suspect != nil && len(s.flow) == 0 {
				s.closedAt = num
			}
		case len(s.flow) > 0 && (ch == ',' || ch == ':'):
			start = true
			continue
		case len(s.flow) == 0 && ch == ':' && (i+1 == len(text) || text[i+1] == ' '):
			start = true
			continue
		case len(s.flow) == 0 && start && (ch == '-' || ch == '?') && (i+1 == len(text) || text[i+1] == ' '):
			continue // an item, or a complex key
		case len(s.flow) == 0 && start && (ch == '|' || ch == '>') && blockIndicator.MatchString(string(text[i:])):
			s.inScalar, s.scalarOwner = true, ind
			return syntaxProblem{}, false
		case start && ch == '!':
			// A tag runs over URI characters, which include [ ] and , but not { }.
			for i+1 < len(text) && (unicode.IsLetter(text[i+1]) || unicode.IsDigit(text[i+1]) || strings.ContainsRune("-;/?:@&=+$,_.!~*'()[]%#", text[i+1])) {
				i++
			}
		case start && (ch == '&' || ch == '*'):
			// An anchor or alias name: letters, digits, '-' and '_'.
			for i+1 < len(text) && (unicode.IsLetter(text[i+1]) || unicode.IsDigit(text[i+1]) || text[i+1] == '-' || text[i+1] == '_') {
				i++
			}
		case start:
			plain = true
		}
		start = false
	}
	return syntaxProblem{}, false
}

func closer(open rune) rune {
	if open == '{' {
		return '}'
	}
	return ']'
}

func (s *syntaxScanner) unclosed(o opener) syntaxProblem {
	switch o.ch {
	case '{':
		return syntaxProblem{o.line, o.col, "this { is never closed: add } at the end of the mapping",
			"a mapping written in braces ends at its }; or drop the braces and write each key on its own, more indented line"}
	case '[':
		return syntaxProblem{o.line, o.col, "this [ is never closed: add ] at the end of the list",
			"a list written in brackets ends at its ]; or drop the brackets and write each item on its own line as - item"}
	}
	hint := `end the string with " where it ends; to write " inside it, use \"`
	if o.ch == '\'' {
		hint = "end the string with ' where it ends; to write ' inside it, use ''"
	}
	if o.continuation {
		hint += " (as written, the string runs on over the lines below)"
	}
	return syntaxProblem{o.line, o.col, fmt.Sprintf("this %c is never closed: add %c at the end of the string", o.ch, o.ch), hint}
}

func (s *syntaxScanner) eof() (syntaxProblem, bool) {
	if s.suspect != nil && (s.quote != nil || len(s.flow) > 0) {
		return *s.suspect, true
	}
	if s.quote != nil {
		return s.unclosed(*s.quote), true
	}
	if len(s.flow) > 0 {
		return s.unclosed(s.flow[len(s.flow)-1]), true
	}
	return syntaxProblem{}, false
}

// indentation checks one line of block structure (outside quotes, brackets and block scalars) against
// the levels open above it.
func (s *syntaxScanner) indentation(num int, text []rune, ind int) (syntaxProblem, bool) {
	body := string(text[ind:])
	if n := len(s.blocks); n > 0 && s.blocks[n-1].hasValue && ind > s.blocks[n-1].indent && !keyLine.MatchString(body) {
		// More of the plain value above, whatever it starts with.
		if p, ok := colonInValue(num, text, ind); ok {
			return p, true
		}
		s.continued = true
		return syntaxProblem{}, false
	}
	if strings.HasPrefix(body, "? ") || body == "?" {
		s.complex = true
	}
	if s.complex {
		return syntaxProblem{}, false
	}
	m := keyLine.FindStringSubmatch(body)
	isItem := body == "-" || strings.HasPrefix(body, "- ")
	if n := len(s.blocks); m == nil && n > 0 && s.blocks[n-1].scalar && (n == 1 || ind > s.blocks[n-2].indent) {
		s.continued = true // more lines of a plain value, indented less than its first but more than its key
		return syntaxProblem{}, false
	}
	// Pop the levels this line closes.
	top := len(s.blocks) - 1
	for top >= 0 && s.blocks[top].indent > ind {
		top--
	}
	var parent *block
	if top >= 0 {
		parent = &s.blocks[top]
	}
	if parent != nil && parent.item && !isItem && top > 0 && s.blocks[top-1].indent == ind {
		// A key after a compact list (items at the indentation of their key): the list has ended.
		top--
		parent = &s.blocks[top]
	}
	switch {
	case parent != nil && parent.indent == ind && isItem && !parent.item && (parent.hasValue || top != len(s.blocks)-1):
		// A "- " item beside keys; only right under a key without a value does it start that key's list.
		return syntaxProblem{num, ind + 1, "this list item stands among the keys of a mapping",
			"indent it under the key that holds the list, or write it as key: value"}, true
	case parent != nil && parent.indent == ind && !isItem && m != nil && parent.item:
		// A key beside "- " items: it belongs to an item, or should start one.
		hint := "indent it into the item above, or start a new item with - "
		if top+1 < len(s.blocks) {
			in := s.blocks[top+1]
			hint = fmt.Sprintf("indent it %d spaces to put it in the item above, like %s on line %d; or start a new item with - ", in.indent, describe(in), in.line)
		}
		return syntaxProblem{num, ind + 1, fmt.Sprintf("%s is a key at the indentation of the list's items", strings.Trim(m[2], `"'`)), hint}, true
	case parent != nil && parent.indent == ind:
		// A sibling of parent.
	case parent == nil && len(s.blocks) > 0:
		// Left of the document's first key: what follows is beyond these checks.
		s.complex = true
		return syntaxProblem{}, false
	case top < len(s.blocks)-1 && parent.indent < ind:
		return misaligned(num, ind, m, *parent, s.blocks[top+1]), true
	case parent != nil && parent.hasValue:
		// Deeper than a key that already has a value: only a plain value may continue here.
		if m != nil { // ("- x" alone would be text that continues the value)
			what := strings.Trim(m[2], `"'`)
			return syntaxProblem{num, ind + 1,
				fmt.Sprintf("%s is indented under %s (line %d), which already has a value", what, describe(*parent), parent.line),
				fmt.Sprintf("indent it %d spaces to put it beside %s, or remove %s's value to nest it there", parent.indent, describe(*parent), describe(*parent))}, true
		}
		if p, ok := colonInValue(num, text, ind); ok {
			return p, true
		}
		s.continued = true // the line continues a plain value: its quotes and brackets are text
		return syntaxProblem{}, false
	}
	if m == nil && !isItem {
		if parent != nil && parent.scalar && parent.indent <= ind {
			s.continued = true // more lines of a plain value
			return syntaxProblem{}, false
		}
		bare := !strings.ContainsAny(body, ":{}[]\"'&*!|>#") // a plain word or words, nothing that could be a key
		if bare && (parent != nil && parent.indent == ind || parent == nil && len(s.blocks) > 0) {
			word := firstWord(body)
			return syntaxProblem{num, ind + 1, fmt.Sprintf("%s is not a key: there is no ':' after it", word),
				fmt.Sprintf("write %s: followed by its value, or remove the line", word)}, true
		}
		if parent == nil {
			s.scalarDoc = true // a document that is a scalar, which the parser reads leniently
			return syntaxProblem{}, false
		}
	}
	return s.open(num, text, ind, top, body)
}

// open closes the levels below top (and parent itself when this line is its sibling), then pushes
// the levels the line opens: each "- " item, then its key or scalar.
func (s *syntaxScanner) open(num int, text []rune, ind, top int, body string) (syntaxProblem, bool) {
	var parent *block
	if top >= 0 {
		parent = &s.blocks[top]
	}
	isItem := body == "-" || strings.HasPrefix(body, "- ")
	s.blocks = s.blocks[:top+1]
	if parent != nil && parent.indent == ind && (!isItem || parent.item) {
		// A sibling replaces parent; but a compact list's first item keeps its key below it.
		s.blocks = s.blocks[:top]
	}
	// Push the levels this line opens: each "- " item, then the key.
	col := ind
	for len(body) > 0 && (body == "-" || strings.HasPrefix(body, "- ")) {
		s.blocks = append(s.blocks, block{indent: col, line: num, item: true})
		n := 1
		for n < len(body) && body[n] == ' ' {
			n++
		}
		col += n
		body = body[n:]
	}
	if body == "" {
		return syntaxProblem{}, false
	}
	m := keyLine.FindStringSubmatch(body)
	if m == nil {
		if isNodeProperty(body) {
			return syntaxProblem{}, false // an anchor or tag for the node on the lines below
		}
		// A scalar: an item's value, or the value of the key above.
		if len(s.blocks) > top+1 && s.blocks[len(s.blocks)-1].item && s.blocks[len(s.blocks)-1].line == num {
			s.blocks[len(s.blocks)-1].hasValue = true
		} else {
			s.blocks = append(s.blocks, block{indent: col, line: num, key: firstWord(body), hasValue: true, scalar: true})
		}
		return syntaxProblem{}, false
	}
	value := strings.TrimSpace(body[len(m[0]):])
	key := strings.Trim(m[2], `"'`)
	b := block{indent: col, line: num, key: key, hasValue: value != "" && !strings.HasPrefix(value, "#") && !isNodeProperty(value)}
	s.blocks = append(s.blocks, b)
	if b.hasValue {
		return colonInValue(num, text, ind)
	}
	return syntaxProblem{}, false
}

// misaligned is the problem of line num, indented ind spaces between two open levels, parent and the
// one above it, aligned with neither; m is the line's key match, if any.
func misaligned(num, ind int, m []string, parent, above block) syntaxProblem {
	near := above
	if ind-parent.indent < above.indent-ind {
		near = parent
	}
	what := "this line"
	if m != nil {
		what = strings.Trim(m[2], `"'`)
	}
	return syntaxProblem{num, ind + 1,
		fmt.Sprintf("%s is indented %d spaces, which lines up with no key or item above it", what, ind),
		fmt.Sprintf("indent it %d spaces, like %s on line %d", near.indent, describe(near), near.line)}
}

// isNodeProperty reports whether a value is only an anchor or a tag, which leaves room for a nested
// value on the lines below.
func isNodeProperty(v string) bool {
	for _, f := range strings.Fields(v) {
		if strings.HasPrefix(f, "#") {
			break
		}
		if !strings.HasPrefix(f, "&") && !strings.HasPrefix(f, "!") {
			return false
		}
	}
	return true
}

// firstWord is the first space-separated word of s, or s when it has none.
func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

func describe(b block) string {
	if b.item {
		return "the item"
	}
	return b.key
}

// colonInValue finds ": " (or a final ':') inside a plain value on a key line, which YAML reads as a
// second key on the same line, and a value that is a bare *, which YAML reads as an alias.
func colonInValue(num int, text []rune, ind int) (syntaxProblem, bool) {
	key := ""
	vstart := ind
	for {
		rest := string(text[vstart:])
		if strings.HasPrefix(rest, "- ") {
			vstart += 2
			for vstart < len(text) && text[vstart] == ' ' {
				vstart++
			}
			continue
		}
		m := keyLine.FindStringSubmatch(rest)
		if m == nil {
			break
		}
		key = strings.Trim(m[2], `"'`)
		vstart += len([]rune(m[0]))
		break
	}
	for vstart < len(text) && text[vstart] == ' ' {
		vstart++
	}
	if key != "" && vstart < len(text) && text[vstart] == '*' && (vstart+1 == len(text) || text[vstart+1] == ' ') {
		return syntaxProblem{num, vstart + 1, "a bare * starts a YAML alias, which needs a name after it",
			"to mean every device, quote it: " + key + `: "*"`}, true
	}
	if vstart >= len(text) || strings.ContainsRune("\"'{[|>&*!#", text[vstart]) {
		return syntaxProblem{}, false
	}
	value := text[vstart:]
	for i := 0; i < len(value); i++ {
		if value[i] == '#' && i > 0 && value[i-1] == ' ' {
			break
		}
		if value[i] == ':' && (i+1 == len(value) || value[i+1] == ' ') {
			v := strings.TrimSpace(string(value))
			quoted := `"` + v + `"`
			if strings.ContainsAny(v, `"\`) {
				quoted = "'" + strings.ReplaceAll(v, "'", "''") + "'"
			}
			what := "this value"
			fix := quoted
			if key != "" {
				what = "the value of " + key
				fix = key + ": " + quoted
			}
			return syntaxProblem{num, vstart + i + 1,
				fmt.Sprintf("%s holds ': ', which YAML reads as the start of another key", what),
				"put the value in quotes: " + fix}, true
		}
	}
	return syntaxProblem{}, false
}
