package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Error is a syntax or semantic error in a query or condition. Offset is a byte offset into the text
// that was parsed, so a caller that embedded the text somewhere (a YAML file) can map it back.
type Error struct {
	Offset int
	Msg    string
}

// Error renders the error as "column <Offset+1>: <Msg>".
func (e *Error) Error() string {
	return fmt.Sprintf("column %d: %s", e.Offset+1, e.Msg)
}

func errorf(off int, format string, args ...any) *Error {
	return &Error{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tSegment // [[name]] after a dot
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
	tDot
	tStar
	tPlus
	tMinus
	tSlash
	tPercent
	tEq
	tNe
	tLt
	tLe
	tGt
	tGe
)

var punctText = [...]string{
	tLParen: "(", tRParen: ")", tLBrack: "[", tRBrack: "]", tComma: ",", tDot: ".", tStar: "*",
	tPlus: "+", tMinus: "-", tSlash: "/", tPercent: "%", tEq: "=", tNe: "!=", tLt: "<", tLe: "<=",
	tGt: ">", tGe: ">=",
}

type token struct {
	kind     tokKind
	pos, end int
	val      string // identifier text, decoded string, segment name
	num      float64
}

// describe names a token for an error message.
func (t token) describe(src string) string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tIdent:
		if isKeyword(t.val) {
			return "keyword " + strings.ToUpper(t.val)
		}
		return "'" + t.val + "'"
	case tString:
		return "string " + clip(src[t.pos:t.end])
	case tNumber:
		return "number " + clip(src[t.pos:t.end])
	case tSegment:
		return clip(src[t.pos:t.end])
	}
	return "'" + punctText[t.kind] + "'"
}

func clip(s string) string {
	if len(s) > 24 {
		cut := 21
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "..."
	}
	return s
}

type lexer struct {
	src  string
	pos  int
	prev tokKind
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// next returns the next token. Whitespace separates tokens; there are no comments.
func (l *lexer) next() (token, *Error) {
	for l.pos < len(l.src) && isSpace(l.src[l.pos]) {
		l.pos++
	}
	t, err := l.scan()
	if err == nil {
		l.prev = t.kind
	}
	return t, err
}

func (l *lexer) scan() (token, *Error) {
	src, start := l.src, l.pos
	if start >= len(src) {
		return token{kind: tEOF, pos: start, end: start}, nil
	}
	punct := func(k tokKind, n int) (token, *Error) {
		l.pos += n
		return token{kind: k, pos: start, end: l.pos}, nil
	}
	peek := byte(0)
	if start+1 < len(src) {
		peek = src[start+1]
	}
	c := src[start]
	switch {
	case isIdentStart(c):
		i := start + 1
		for i < len(src) && isIdentChar(src[i]) {
			i++
		}
		l.pos = i
		return token{kind: tIdent, pos: start, end: i, val: src[start:i]}, nil
	case c >= '0' && c <= '9':
		return l.number()
	case c == '\'' || c == '"':
		return l.str(c)
	}
	switch c {
	case '(':
		return punct(tLParen, 1)
	case ')':
		return punct(tRParen, 1)
	case '[':
		if peek == '[' && l.prev == tDot {
			end := strings.Index(src[start+2:], "]]")
			if end < 0 {
				return token{}, errorf(start, "unterminated [[...]] escape: expected ']]'")
			}
			name := src[start+2 : start+2+end]
			if name == "" {
				return token{}, errorf(start, "empty [[]] escape: expected a property name")
			}
			l.pos = start + 2 + end + 2
			return token{kind: tSegment, pos: start, end: l.pos, val: name}, nil
		}
		return punct(tLBrack, 1)
	case ']':
		return punct(tRBrack, 1)
	case ',':
		return punct(tComma, 1)
	case '.':
		return punct(tDot, 1)
	case '*':
		return punct(tStar, 1)
	case '+':
		return punct(tPlus, 1)
	case '-':
		return punct(tMinus, 1)
	case '/':
		return punct(tSlash, 1)
	case '%':
		return punct(tPercent, 1)
	case '=':
		if peek == '=' {
			return token{}, errorf(start, "'==' is not an operator: use '=' to compare")
		}
		return punct(tEq, 1)
	case '!':
		if peek == '=' {
			return punct(tNe, 2)
		}
		return token{}, errorf(start, "unexpected character '!': use NOT to negate or '!=' to compare")
	case '<':
		switch peek {
		case '=':
			return punct(tLe, 2)
		case '>':
			return punct(tNe, 2)
		}
		return punct(tLt, 1)
	case '>':
		if peek == '=' {
			return punct(tGe, 2)
		}
		return punct(tGt, 1)
	case '&':
		return token{}, errorf(start, "unexpected character '&': use AND")
	case '|':
		return token{}, errorf(start, "unexpected character '|': use OR")
	}
	r, _ := utf8.DecodeRuneInString(src[start:])
	if r == utf8.RuneError {
		return token{}, errorf(start, "invalid UTF-8 byte 0x%02x", c)
	}
	return token{}, errorf(start, "unexpected character %q", r)
}

// number scans a decimal number (digits, optional fraction, optional exponent) or a hex integer (0x...).
// A number must start with a digit: ".5" is not a number, so a "." always separates path segments.
func (l *lexer) number() (token, *Error) {
	src, start := l.src, l.pos
	i := start
	var v float64
	if src[i] == '0' && i+1 < len(src) && src[i+1]|0x20 == 'x' {
		i += 2
		for i < len(src) && isHex(src[i]) {
			i++
		}
		if i == start+2 {
			return token{}, errorf(start, "invalid hex number: expected hex digits after '0x'")
		}
		u, err := strconv.ParseUint(src[start+2:i], 16, 64)
		if err != nil {
			return token{}, errorf(start, "hex number %s is too large", clip(src[start:i]))
		}
		v = float64(u)
	} else {
		for i < len(src) && isDigit(src[i]) {
			i++
		}
		if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
			i++
			for i < len(src) && isDigit(src[i]) {
				i++
			}
		}
		if i < len(src) && src[i]|0x20 == 'e' {
			j := i + 1
			if j < len(src) && (src[j] == '+' || src[j] == '-') {
				j++
			}
			if j < len(src) && isDigit(src[j]) {
				for j < len(src) && isDigit(src[j]) {
					j++
				}
				i = j
			}
		}
		f, err := strconv.ParseFloat(src[start:i], 64)
		if err != nil || math.IsInf(f, 0) {
			return token{}, errorf(start, "number %s is out of range", clip(src[start:i]))
		}
		v = f
	}
	if i < len(src) && (isIdentChar(src[i]) || src[i] == '.') {
		j := i
		for j < len(src) && (isIdentChar(src[j]) || src[j] == '.') {
			j++
		}
		if l.prev == tDot {
			return token{}, errorf(start, "a path segment cannot start with a digit: write it as [[%s]]", clip(src[start:j]))
		}
		return token{}, errorf(start, "invalid number %s", clip(src[start:j]))
	}
	l.pos = i
	return token{kind: tNumber, pos: start, end: i, num: v}, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }

// str scans a string in single or double quotes. Escapes: \' \" \\ \/ \b \f \n \r \t and \uXXXX
// (UTF-16, surrogate pairs combined). The reference documents \' \" \\ and \u; the JSON escapes are
// accepted as well because the hub's SQL dialect descends from Cosmos DB, which takes them — a choice.
// Any other escape is an error. Raw bytes, including newlines, are kept as they are.
func (l *lexer) str(q byte) (token, *Error) {
	src, start := l.src, l.pos
	i := start + 1
	// Fast path: no escapes.
	for i < len(src) && src[i] != q && src[i] != '\\' {
		i++
	}
	if i < len(src) && src[i] == q {
		l.pos = i + 1
		return token{kind: tString, pos: start, end: l.pos, val: src[start+1 : i]}, nil
	}
	var b strings.Builder
	b.WriteString(src[start+1 : i])
	for {
		if i >= len(src) {
			return token{}, errorf(start, "unterminated string: expected a closing %c", q)
		}
		c := src[i]
		if c == q {
			l.pos = i + 1
			return token{kind: tString, pos: start, end: l.pos, val: b.String()}, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(src) {
			return token{}, errorf(start, "unterminated string: expected a closing %c", q)
		}
		e := src[i+1]
		switch e {
		case '\'', '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(src, i+2)
			if !ok {
				return token{}, errorf(i, `invalid \u escape: expected four hex digits`)
			}
			i += 6
			if utf16.IsSurrogate(r) && i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' {
				if r2, ok := hex4(src, i+2); ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					}
				}
			}
			b.WriteRune(r) // a lone surrogate becomes U+FFFD
			continue
		default:
			return token{}, errorf(i, `unknown escape '\%s' in string: use \' \" \\ or \uXXXX`, src[i+1:i+1+utf8RuneLen(src[i+1:])])
		}
		i += 2
	}
}

func utf8RuneLen(s string) int {
	_, n := utf8.DecodeRuneInString(s)
	return n
}

// hex4 reads the four hex digits at src[i:].
func hex4(src string, i int) (r rune, ok bool) {
	if i < 0 || i+4 > len(src) {
		return 0, false
	}
	for j := i; j < i+4; j++ {
		c := src[j]
		if !isHex(c) {
			return 0, false
		}
		d := rune(c - '0')
		if c > '9' {
			d = rune(c|0x20-'a') + 10
		}
		r = r<<4 | d
	}
	return r, true
}
