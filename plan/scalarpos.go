package plan

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// valuePos maps a byte offset in a scalar's decoded value (as a condition parser reports it) to the
// line and column in the source where that byte was written. It re-decodes the scalar from the
// source for its style (plain, single-quoted, double-quoted with escapes, literal and folded blocks,
// each with line folding) and checks the result against the value yaml.v3 decoded. When the two
// differ — a case this decoder does not model, such as a block scalar with an explicit indentation
// indicator — the mapping is not trusted: valuePos returns the scalar's own position with exact false,
// and the caller says in the message where in the string the problem is. An offset at the end of the
// value maps just after its last character.
func (l *loader) valuePos(n *yaml.Node, off int) (line, col int, exact bool) {
	n = deref(n)
	if n == nil || n.Line < 1 {
		return 1, 1, false
	}
	pos, ok := l.decodePositions(n)
	if !ok || off < 0 || off > len(n.Value) {
		return n.Line, n.Column, false
	}
	line, col = l.position(pos[off])
	return line, col, true
}

// nodeOffset is the byte offset of a node's line and (rune) column in the source.
func (l *loader) nodeOffset(line, col int) (int, bool) {
	off := 0
	for i := 1; i < line; i++ {
		j := bytes.IndexByte(l.src[off:], '\n')
		if j < 0 {
			return 0, false
		}
		off += j + 1
	}
	for i := 1; i < col; i++ {
		if off >= len(l.src) || l.src[off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(l.src[off:])
		off += size
	}
	return off, true
}

// decodePositions returns, for each byte of n.Value and one past its end, the source offset it was
// decoded from; ok is false when re-decoding does not reproduce n.Value.
func (l *loader) decodePositions(n *yaml.Node) (pos []int, ok bool) {
	start, ok := l.nodeOffset(n.Line, n.Column)
	if !ok {
		return nil, false
	}
	// A tag or anchor before the scalar: skip "!tag " and "&anchor ".
	for start < len(l.src) && (l.src[start] == '!' || l.src[start] == '&') {
		for start < len(l.src) && !isBlank(l.src[start]) {
			start++
		}
		for start < len(l.src) && (l.src[start] == ' ' || l.src[start] == '\t') {
			start++
		}
	}
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return l.decodeBlock(n.Value, start)
	case n.Style&yaml.DoubleQuotedStyle != 0:
		if start >= len(l.src) || l.src[start] != '"' {
			return nil, false
		}
		return l.decodeFlow(n.Value, start+1, '"')
	case n.Style&yaml.SingleQuotedStyle != 0:
		if start >= len(l.src) || l.src[start] != '\'' {
			return nil, false
		}
		return l.decodeFlow(n.Value, start+1, '\'')
	}
	return l.decodeFlow(n.Value, start, 0)
}

func isBlank(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// decodeFlow walks a plain (quote 0), single- or double-quoted scalar from src[s], matching what it
// decodes against val.
func (l *loader) decodeFlow(val string, s int, quote byte) ([]int, bool) {
	src := l.src
	pos := make([]int, len(val)+1)
	v := 0
	for v < len(val) {
		if s >= len(src) {
			return nil, false
		}
		ch := src[s]
		switch {
		case quote == '"' && ch == '\\':
			if s+1 < len(src) && (src[s+1] == '\n' || src[s+1] == '\r') {
				// An escaped line break joins the lines without a space.
				s++
				for s < len(src) && isBlank(src[s]) {
					s++
				}
				continue
			}
			dec, width := unescape(src[s:])
			if width == 0 || !strings.HasPrefix(val[v:], dec) {
				return nil, false
			}
			for k := range len(dec) {
				pos[v+k] = s
			}
			v += len(dec)
			s += width
		case quote == '\'' && ch == '\'' && s+1 < len(src) && src[s+1] == '\'':
			if val[v] != '\'' {
				return nil, false
			}
			pos[v] = s
			v++
			s += 2
		case ch == ' ' || ch == '\t':
			e := s
			for e < len(src) && (src[e] == ' ' || src[e] == '\t') {
				e++
			}
			if e < len(src) && (src[e] == '\n' || src[e] == '\r') {
				s = e // trailing blanks before a line break are folded away
				continue
			}
			if val[v] != ch {
				return nil, false
			}
			pos[v] = s
			v++
			s++
		case ch == '\n' || ch == '\r':
			// Line folding: one break becomes a space, each further (empty) line a newline.
			at, breaks := s, 0
			for s < len(src) && isBlank(src[s]) {
				if src[s] == '\n' {
					breaks++
				}
				s++
			}
			want := " "
			if breaks > 1 {
				want = strings.Repeat("\n", breaks-1)
			}
			if !strings.HasPrefix(val[v:], want) {
				return nil, false
			}
			for k := range len(want) {
				pos[v+k] = at
			}
			v += len(want)
		default:
			_, size := utf8.DecodeRune(src[s:])
			if s+size > len(src) || !strings.HasPrefix(val[v:], string(src[s:s+size])) {
				return nil, false
			}
			for k := range size {
				pos[v+k] = s + k
			}
			v += size
			s += size
		}
	}
	pos[len(val)] = s
	return pos, true
}

// unescape decodes one double-quoted escape at b[0] == '\\', returning the text it stands for and the
// bytes it spans (0 when it is not a valid escape).
func unescape(b []byte) (string, int) {
	if len(b) < 2 {
		return "", 0
	}
	simple := map[byte]string{'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", '\t': "\t", 'n': "\n", 'v': "\v", 'f': "\f",
		'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"", '/': "/", '\\': "\\", 'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029"}
	if s, ok := simple[b[1]]; ok {
		return s, 2
	}
	digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[b[1]]
	if digits == 0 || len(b) < 2+digits {
		return "", 0
	}
	r, err := strconv.ParseUint(string(b[2:2+digits]), 16, 32)
	if err != nil {
		return "", 0
	}
	return string(rune(r)), 2 + digits
}

// decodeBlock walks a literal (|) or folded (>) block scalar whose header starts at src[s]: content
// starts on the next line, indented as its first non-empty line. Between lines the value holds either
// one space (a fold) or newlines; both are matched against val rather than re-derived from the folding
// rules, which is enough to place every content byte exactly.
func (l *loader) decodeBlock(val string, s int) ([]int, bool) {
	src := l.src
	nl := bytes.IndexByte(src[s:], '\n')
	if nl < 0 {
		return nil, false
	}
	s += nl + 1
	// Indentation of the first non-empty line.
	indent := -1
	for t := s; t < len(src) && indent < 0; {
		e := t
		for e < len(src) && src[e] == ' ' {
			e++
		}
		if e < len(src) && src[e] != '\n' && src[e] != '\r' {
			indent = e - t
		}
		j := bytes.IndexByte(src[t:], '\n')
		if j < 0 {
			break
		}
		t += j + 1
	}
	if indent < 0 {
		return nil, false
	}
	pos := make([]int, len(val)+1)
	v, prevEnd := 0, s
	first := true
	for v < len(val) && s < len(src) {
		end := len(src)
		if j := bytes.IndexByte(src[s:], '\n'); j >= 0 {
			end = s + j
		}
		line := src[s:end]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		content := []byte{}
		if len(line) > indent {
			content = line[indent:]
		} else if len(bytes.TrimLeft(line, " ")) > 0 {
			return nil, false // a less-indented line ends the block before the value did
		}
		if !first {
			// Separators between lines: one folding space, or newlines.
			if v < len(val) && val[v] == ' ' && len(content) > 0 {
				pos[v] = prevEnd
				v++
			} else {
				for v < len(val) && val[v] == '\n' {
					pos[v] = prevEnd
					v++
				}
			}
		}
		first = false
		for k := 0; k < len(content) && v < len(val); k++ {
			if val[v] != content[k] {
				return nil, false
			}
			pos[v] = s + indent + k
			v++
		}
		prevEnd = s + len(line)
		s = end + 1
	}
	for v < len(val) && val[v] == '\n' { // kept final line breaks
		pos[v] = prevEnd
		v++
	}
	if v < len(val) {
		return nil, false
	}
	pos[len(val)] = prevEnd
	return pos, true
}
