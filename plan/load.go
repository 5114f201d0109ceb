package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest plan accepted, in bytes. Real plans are a few kilobytes (a 100-wave plan with
// long conditions stays well under it); the bound makes a huge or runaway input fail at once instead of
// costing memory and time.
const MaxSize = 1 << 20

// maxNodes bounds the number of YAML nodes visited while expanding aliases. Aliases are allowed (they
// are handy for repeated conditions), but a "billion laughs" document expands exponentially; beyond
// this many nodes the plan is rejected. A plan at MaxSize without aliases has far fewer nodes.
const maxNodes = 200_000

// Load parses and validates one plan. file names the plan in diagnostics ("-" for standard input) and
// data is its content. Load never panics and never stops at the first problem: it returns every
// diagnostic it found, sorted by position. The Plan is nil when any diagnostic is an error; warnings
// alone still give a Plan.
func Load(file string, data []byte) (p *Plan, ds Diagnostics) {
	l := &loader{file: file, src: data}
	defer func() {
		// A panic in a parser is a bug, but a plan must never crash the tool: report it as a
		// diagnostic on the plan instead.
		if r := recover(); r != nil {
			p = nil
			ds = append(l.diags, Diagnostic{Severity: Error, File: file, Line: 1, Col: 1,
				Message: fmt.Sprintf("internal error while reading the plan: %v", r),
				Hint:    "please report this plan to the rollout maintainers"}).sortDedup()
		}
	}()
	p = l.load()
	ds = l.diags.sortDedup()
	if ds.HasErrors() {
		p = nil
	}
	return p, ds
}

// LoadFile reads the plan at path, at most MaxSize bytes of it, and loads it as Load does. A file that
// cannot be read gives one positionless error. "-" is not special here: the CLI reads standard input
// itself.
func LoadFile(path string) (*Plan, Diagnostics) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, Diagnostics{{Severity: Error, File: path, Message: err.Error()}}
	}
	return Load(path, data)
}

// ReadFile reads the plan at path, stopping after MaxSize+1 bytes so that an oversized file fails fast
// (Load reports it) without being read whole.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read plan: %w", unwrapPath(err))
	}
	defer f.Close()
	return Read(f)
}

// Read reads a plan from r, at most MaxSize+1 bytes, so that Load can report an oversized input
// without the rest of it ever being read.
func Read(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read plan: %w", unwrapPath(err))
	}
	return data, nil
}

// unwrapPath drops the path from an *os.PathError: the diagnostic already names the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loader holds one plan being loaded and the diagnostics found so far.
type loader struct {
	file  string
	src   []byte
	root  *yaml.Node // the top-level mapping; nil when the document is not one
	diags Diagnostics
	nodes int        // nodes visited by toValue, for the alias bound
	bomb  bool       // the alias bound was hit (reported once)
	fatal bool       // the document has a problem that makes its value unfit for further checks
	alias *yaml.Node // the outermost alias being expanded, where a bomb is reported
	apath string     // its document path
}

func (l *loader) add(sev Severity, n *yaml.Node, path, hint, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	l.addAt(sev, line, col, path, hint, fmt.Sprintf(format, args...))
}

func (l *loader) addAt(sev Severity, line, col int, path, hint, msg string) {
	l.diags = append(l.diags, Diagnostic{Severity: sev, File: l.file, Line: line, Col: col, Path: path, Message: msg, Hint: hint})
}

func (l *loader) errorf(n *yaml.Node, path, format string, args ...any) {
	l.add(Error, n, path, "", format, args...)
}

func (l *loader) load() *Plan {
	if !l.readable() {
		return nil
	}
	doc, ok := l.parse()
	if !ok {
		return nil
	}
	if l.fleetFile() {
		return nil
	}
	value := l.toValue(doc, "")
	for _, d := range l.diags {
		l.fatal = l.fatal || !strings.HasPrefix(d.Message, "duplicate key")
	}
	if l.fatal {
		// Alias bombs, unsupported tags, merge keys and the like make the value unreliable for the
		// schema; report them alone. Duplicate keys are not fatal: the first one counts, and the
		// rest of the plan is still checked.
		return nil
	}
	l.validateSchema(value)
	s := l.check()
	if l.diags.HasErrors() {
		return nil
	}
	return l.resolve(s)
}

// fleetFile reports, as one error, a document that is an emulator fleet file rather than a plan: it
// has groups or devices at the top and no waves. Its keys would otherwise each be reported as unknown.
func (l *loader) fleetFile() bool {
	var keys []string
	var first *yaml.Node
	for i := 0; i+1 < len(l.root.Content); i += 2 {
		switch k := l.root.Content[i]; k.Value {
		case "waves":
			return false
		case "groups", "devices":
			if !slices.Contains(keys, k.Value+":") {
				keys = append(keys, k.Value+":")
			}
			if first == nil {
				first = k
			}
		}
	}
	if first == nil {
		return false
	}
	l.add(Error, first, "", "a plan has version, name, action and waves; a fleet file describes the emulator's devices",
		"this looks like a fleet file (%s); give it with --emulate FLEET", strings.Join(keys, ", "))
	return true
}

// readable rejects inputs that are not worth handing to the YAML parser: empty, oversized, or not
// UTF-8 text.
func (l *loader) readable() bool {
	if len(l.src) > MaxSize {
		l.addAt(Error, 1, 1, "", "plans are small text files; check that the right file was given",
			fmt.Sprintf("plan is larger than %d bytes", MaxSize))
		return false
	}
	if len(bytes.TrimSpace(l.src)) == 0 {
		l.addAt(Error, 1, 1, "", "a plan needs at least version, name and waves", "plan is empty")
		return false
	}
	for i := 0; i < len(l.src); {
		r, size := utf8.DecodeRune(l.src[i:])
		if (r == utf8.RuneError && size == 1) || r == 0 || (r < 0x20 && r != '\n' && r != '\r' && r != '\t') || r == 0x7f {
			line, col := l.position(i)
			msg := fmt.Sprintf("plan is not UTF-8 text: byte 0x%02x at offset %d", l.src[i], i)
			if r != utf8.RuneError {
				msg = fmt.Sprintf("plan holds control character U+%04X at offset %d", r, i)
			}
			l.addAt(Error, line, col, "", "is this a binary file? plans are YAML text", msg)
			return false
		}
		i += size
	}
	return true
}

// position converts a byte offset in the source into a 1-based line and rune column.
func (l *loader) position(off int) (line, col int) {
	off = min(off, len(l.src))
	before := l.src[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[lineStart:]) + 1
}

// sourceLine returns line n (1-based) of the source without its line break.
func (l *loader) sourceLine(n int) string {
	lines := bytes.Split(l.src, []byte{'\n'})
	if n < 1 || n > len(lines) {
		return ""
	}
	return strings.TrimRight(string(lines[n-1]), "\r")
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserErrors are the messages of yaml.v3's parser, which numbers lines from 0 in its errors; its
// scanner's messages (some also start "did not find expected") number them from 1.
var parserErrors = map[string]bool{
	"did not find expected <document start>": true, "did not find expected node content": true,
	"did not find expected '-' indicator": true, "did not find expected key": true,
	"did not find expected ',' or ']'": true, "did not find expected ',' or '}'": true,
}

// parse decodes the single YAML document and checks that it is a mapping.
func (l *loader) parse() (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(l.src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.addAt(Error, 1, 1, "", "a plan needs at least version, name and waves", "plan is empty (only comments)")
			return nil, false
		}
		l.yamlError(err)
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		l.add(Error, &next, "", "split the plans into separate files", "plan must be a single YAML document, found a second one")
	} else if !errors.Is(err, io.EOF) {
		l.yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		l.addAt(Error, 1, 1, "", "a plan needs at least version, name and waves", "plan is empty (only comments)")
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		l.add(Error, root, "", "a plan is a mapping of keys such as version, name and waves",
			"plan must be a YAML mapping, found %s", kindName(root))
		return nil, false
	}
	l.root = root
	return root, !l.diags.HasErrors()
}

// yamlError turns a YAML syntax error into a diagnostic. yaml.v3 reports only a line, and for many
// errors the line where the enclosing construct starts, so the source is scanned for the actual cause
// first (see scanSyntax). When the scan finds none, the diagnostic keeps yaml.v3's message, at the
// first non-blank character of the line it names.
func (l *loader) yamlError(err error) {
	if p, ok := scanSyntaxSafely(l.src); ok {
		l.addAt(Error, p.line, p.col, "", p.hint, "invalid YAML: "+p.msg)
		return
	}
	msg := err.Error()
	line, col := 1, 1
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserErrors[msg] {
			// The parser's errors (as opposed to the scanner's) count the line from 0.
			line++
		}
		line = min(max(line, 1), bytes.Count(l.src, []byte{'\n'})+1)
		text := l.sourceLine(line)
		col = utf8.RuneCountInString(text[:len(text)-len(strings.TrimLeft(text, " \t"))]) + 1
		if i := strings.IndexByte(text, '\t'); i >= 0 && strings.TrimLeft(text[:i], " ") == "" {
			// The usual cause: a tab in the indentation.
			l.addAt(Error, line, utf8.RuneCountInString(text[:i])+1, "", "indent YAML with spaces, not tabs", "invalid YAML: "+msg)
			return
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	l.addAt(Error, line, col, "", "", "invalid YAML: "+msg)
}

// scanSyntaxSafely is scanSyntax, except that a defect in it leaves yaml.v3's message standing
// instead of failing the whole load (FuzzScanSyntax calls scanSyntax itself, so defects still show).
func scanSyntaxSafely(src []byte) (p syntaxProblem, ok bool) {
	defer func() {
		if recover() != nil {
			p, ok = syntaxProblem{}, false
		}
	}()
	return scanSyntax(src)
}

// kindName names a node's kind for messages, in the words of JSON Schema where they exist.
func kindName(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return "a string"
	}
	return "nothing"
}

// deref follows aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

var identPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// keyPath appends a mapping key to a document path.
func keyPath(path, key string) string {
	if !identPath.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a document path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// toValue converts a node into the JSON-shaped value the schema validator takes (map[string]any,
// []any, string, json.Number, bool, nil), reporting what JSON cannot hold: duplicate keys, non-scalar
// keys, merge keys, unsupported tags, non-finite numbers, and alias expansions beyond maxNodes.
func (l *loader) toValue(n *yaml.Node, path string) any {
	if l.nodes++; l.nodes > maxNodes {
		if !l.bomb {
			l.bomb = true
			at, atPath := l.alias, l.apath
			if at == nil {
				at, atPath = n, path
			}
			l.add(Error, at, atPath, "write the values out, or use fewer nested aliases",
				"aliases expand the plan to more than %d YAML nodes", maxNodes)
		}
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return l.toValue(n.Content[0], path)
	case yaml.AliasNode:
		if n.Alias == nil {
			l.errorf(n, path, "alias *%s names no anchor", n.Value)
			return nil
		}
		if l.alias == nil {
			l.alias, l.apath = n, path
			defer func() { l.alias = nil }()
		}
		return l.toValue(n.Alias, path)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, l.toValue(c, indexPath(path, i)))
		}
		return out
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := deref(n.Content[i]), n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				l.errorf(n.Content[i], path, "mapping keys must be plain strings, found %s", kindName(k))
				continue
			}
			if k.ShortTag() == "!!merge" {
				l.add(Error, n.Content[i], path, "put settings shared by waves under defaults",
					"YAML merge keys (<<) are not supported")
				continue
			}
			kp := keyPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				where := fmt.Sprintf("line %d", first.Line)
				if first.Line == n.Content[i].Line {
					where = fmt.Sprintf("column %d of this line", first.Column)
				}
				l.add(Error, n.Content[i], kp, "remove one of them; until then the first one counts", "duplicate key %q (first defined at %s)", k.Value, where)
				continue
			}
			seen[k.Value] = n.Content[i]
			out[k.Value] = l.toValue(v, kp)
		}
		return out
	case yaml.ScalarNode:
		return l.scalarValue(n, path)
	}
	l.errorf(n, path, "unexpected YAML node")
	return nil
}

func (l *loader) scalarValue(n *yaml.Node, path string) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!str", "!!timestamp":
		// Timestamps stay strings: notBefore is checked as RFC 3339 text, exactly as written.
		return n.Value
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			l.errorf(n, path, "invalid boolean %q", n.Value)
			return nil
		}
		return b
	case "!!int", "!!float":
		var v any
		if err := n.Decode(&v); err != nil {
			l.errorf(n, path, "invalid number %q", n.Value)
			return nil
		}
		switch x := v.(type) {
		case int:
			return json.Number(strconv.Itoa(x))
		case int64:
			return json.Number(strconv.FormatInt(x, 10))
		case uint64:
			return json.Number(strconv.FormatUint(x, 10))
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				l.errorf(n, path, "%s is not a finite number", n.Value)
				return nil
			}
			return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
		}
		l.errorf(n, path, "invalid number %q", n.Value)
		return nil
	case "!!binary":
		l.add(Error, n, path, "write the value as text", "binary values (!!binary) are not supported")
		return nil
	}
	l.add(Error, n, path, "remove the tag", "unsupported YAML tag %s", n.Tag)
	return nil
}
