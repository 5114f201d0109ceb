package emulator

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// FleetError is every problem found in one fleet file. ParseFleet and LoadFleet return it (as a
// *FleetError) for a file that was read but is not a valid fleet; a file that cannot be read gives a
// plain error instead.
type FleetError struct {
	File     string
	Problems []FleetProblem
}

// FleetProblem is one problem of a fleet file. Line and Col are 1-based (Col counts characters); Path
// is the problem's place in the document, such as groups[1].count, or "" for the whole file. Message
// says what is wrong, in the fleet file's own words; Hint, when not empty, what to do about it.
type FleetProblem struct {
	Line, Col int
	Path      string
	Message   string
	Hint      string
}

// Error renders each problem on its own line as file:line:col: message, with the hint in parentheses
// when there is one.
func (e *FleetError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = fmt.Sprintf("%s:%d:%d: %s", e.File, p.Line, p.Col, p.Message)
		if p.Hint != "" {
			lines[i] += " (" + p.Hint + ")"
		}
	}
	return strings.Join(lines, "\n")
}

// fleetParser collects the problems of one fleet file.
type fleetParser struct {
	file     string
	src      []byte
	problems []FleetProblem
}

func (p *fleetParser) add(n *yaml.Node, path, hint, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	p.problems = append(p.problems, FleetProblem{Line: line, Col: col, Path: path, Message: fmt.Sprintf(format, args...), Hint: hint})
}

func (p *fleetParser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	slices.SortStableFunc(p.problems, func(a, b FleetProblem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return &FleetError{File: p.file, Problems: p.problems}
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserErrors are the messages of yaml.v3's parser, which numbers lines from 0 in its errors; its
// scanner's messages (some also start "did not find expected") number them from 1.
var parserErrors = map[string]bool{
	"did not find expected <document start>": true, "did not find expected node content": true,
	"did not find expected '-' indicator": true, "did not find expected key": true,
	"did not find expected ',' or ']'": true, "did not find expected ',' or '}'": true,
}

// syntax reports a YAML syntax error. yaml.v3 names the line of the construct the error is in: for
// the parser's errors counted from 0, for the scanner's from 1. An
// unclosed bracket is pointed at; otherwise the column is the line's first non-blank character.
func (p *fleetParser) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 1, 1
	hint := ""
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserErrors[msg] {
			line++
		}
		lines := strings.Split(string(p.src), "\n")
		line = min(max(line, 1), len(lines))
		text := strings.TrimRight(lines[line-1], "\r")
		indent := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
		col = utf8.RuneCountInString(indent) + 1
		if i := strings.IndexByte(indent, '\t'); i >= 0 {
			col = i + 1
		}
		for _, b := range []struct{ open, close, what string }{{"{", "}", "mapping"}, {"[", "]", "list"}} {
			if strings.Contains(msg, "'"+b.close+"'") || msg == "did not find expected node content" {
				if i := unclosedAt(text, b.open[0], b.close[0]); i >= 0 {
					col = utf8.RuneCountInString(text[:i]) + 1
					msg = fmt.Sprintf("this %s is never closed: add %s at the end of the %s", b.open, b.close, b.what)
				}
			}
		}
	}
	if strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token") {
		hint = "indent YAML with spaces, not tabs"
	}
	p.problems = append(p.problems, FleetProblem{Line: line, Col: col, Message: "invalid YAML: " + msg, Hint: hint})
}

// unclosedAt returns the byte offset of the last open bracket on line that the line does not close,
// skipping quoted text, or -1.
func unclosedAt(line string, open, close byte) int {
	var stack []int
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' '):
			i = len(line)
		case c == open:
			stack = append(stack, i)
		case c == close && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) == 0 {
		return -1
	}
	return stack[len(stack)-1]
}

// fieldKind is what a fleet file key holds.
type fieldKind int

const (
	kindAny      fieldKind = iota // anything: read-only twin fields, kept only so a pasted twin loads
	kindMapping                   // a mapping with the keys of field.keys
	kindObject                    // a free-form mapping: tags, desired and reported properties
	kindList                      // a list of field.items
	kindText                      // a scalar read as text
	kindWhole                     // a whole number
	kindBool                      // true or false
	kindShare                     // a share: 5% or a fraction in [0, 1]
	kindDuration                  // a Go duration, or 0
)

type field struct {
	kind  fieldKind
	keys  map[string]*field
	items *field
}

var (
	shareField    = &field{kind: kindShare}
	durationField = &field{kind: kindDuration}
	textField     = &field{kind: kindText}
	objectField   = &field{kind: kindObject}
	anyField      = &field{kind: kindAny}
	behaviorField = &field{kind: kindMapping, keys: map[string]*field{
		"offline": shareField, "methodFailure": shareField, "methodTimeout": shareField, "methodLatency": durationField,
		"driver": textField, "onlineAfter": durationField,
		"converge": {kind: kindMapping, keys: map[string]*field{"delay": durationField, "failure": shareField}},
	}}
	// fleetSchema is the shape of a fleet file; fleetFile, groupYAML and deviceYAML decode it.
	fleetSchema = &field{kind: kindMapping, keys: map[string]*field{
		"configurations": {kind: kindList, items: &field{kind: kindMapping, keys: map[string]*field{
			"id": textField, "schemaVersion": textField, "labels": objectField, "targetCondition": textField,
			"priority": {kind: kindWhole},
			"content": {kind: kindMapping, keys: map[string]*field{
				"deviceContent": objectField, "modulesContent": objectField, "moduleContent": objectField}},
			"metrics": {kind: kindMapping, keys: map[string]*field{"queries": objectField}},
		}}},
		"defaults": {kind: kindMapping, keys: map[string]*field{"behavior": behaviorField}},
		"groups": {kind: kindList, items: &field{kind: kindMapping, keys: map[string]*field{
			"name": textField, "count": {kind: kindWhole}, "idPrefix": textField,
			"tags": objectField, "desired": objectField, "reported": objectField, "behavior": behaviorField,
		}}},
		"devices": {kind: kindList, items: &field{kind: kindMapping, keys: map[string]*field{
			"deviceId": textField, "status": textField, "statusReason": textField, "connectionState": textField,
			"modelId": textField, "authenticationType": textField,
			"capabilities": {kind: kindMapping, keys: map[string]*field{"iotEdge": {kind: kindBool}}},
			"tags":         objectField,
			"properties":   {kind: kindMapping, keys: map[string]*field{"desired": objectField, "reported": objectField}},
			"behavior":     behaviorField,
			"etag":         anyField, "deviceEtag": anyField, "version": anyField, "statusUpdateTime": anyField,
			"lastActivityTime": anyField, "cloudToDeviceMessageCount": anyField, "x509Thumbprint": anyField,
			"deviceScope": anyField, "parentScopes": anyField,
			"modules": {kind: kindList, items: &field{kind: kindMapping, keys: map[string]*field{
				"moduleId": textField, "managedBy": textField, "modelId": textField, "tags": objectField,
				"properties": {kind: kindMapping, keys: map[string]*field{"desired": objectField, "reported": objectField}},
			}}},
		}}},
	}}
)

// looksLikePlan reports a rollout plan given where a fleet file was expected.
func (p *fleetParser) looksLikePlan(root *yaml.Node) bool {
	var planKey *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch k := root.Content[i]; k.Value {
		case "groups", "devices", "configurations":
			return false
		case "waves", "action":
			if planKey == nil {
				planKey = k
			}
		}
	}
	if planKey == nil {
		return false
	}
	p.add(planKey, "", "give the plan as the command's PLAN argument; --emulate takes a fleet file of groups: and devices:",
		"this looks like a plan file, not a fleet file")
	return true
}

// check reports what in n does not fit f: unknown keys (with the closest known key), values of the
// wrong kind, and shares and durations that do not read.
func (p *fleetParser) check(n *yaml.Node, f *field, path, key string) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil || f.kind == kindAny || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	what := key
	if what == "" {
		what = "a fleet file"
	}
	switch f.kind {
	case kindMapping, kindObject:
		if n.Kind != yaml.MappingNode {
			p.add(n, path, "", "%s must be a mapping of keys, found %s", what, nodeKind(n))
			return
		}
		if f.kind == kindMapping {
			p.checkMapping(n, f, path, key)
		}
	case kindList:
		if n.Kind != yaml.SequenceNode {
			p.add(n, path, "", "%s must be a list, found %s", what, nodeKind(n))
			return
		}
		for i, item := range n.Content {
			p.check(item, f.items, fmt.Sprintf("%s[%d]", path, i), strings.TrimSuffix(key, "s"))
		}
	case kindText:
		if n.Kind != yaml.ScalarNode {
			p.add(n, path, "", "%s must be text, found %s", what, nodeKind(n))
		}
	case kindWhole:
		if _, err := strconv.Atoi(n.Value); n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil {
			p.add(n, path, "", "%s must be a whole number, found %s", what, nodeKind(n))
		}
	case kindBool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			p.add(n, path, "", "%s must be true or false, found %s", what, nodeKind(n))
		}
	case kindShare:
		if n.Kind != yaml.ScalarNode {
			p.add(n, path, "", "%s must be a share such as 5%%, found %s", what, nodeKind(n))
			return
		}
		if _, err := ParseShare(n.Value); err != nil {
			hint := "write a percentage such as 5%, or a fraction from 0 to 1"
			if v, perr := strconv.ParseFloat(n.Value, 64); perr == nil && v > 1 && v <= 100 {
				hint = fmt.Sprintf("a bare number is a fraction from 0 to 1; write %s%% for %s percent", n.Value, n.Value)
			}
			p.add(n, path, hint, "%s: %v", what, err)
		}
	case kindDuration:
		if n.Kind != yaml.ScalarNode {
			p.add(n, path, "", "%s must be a duration such as 20ms or 2s, found %s", what, nodeKind(n))
			return
		}
		if d, err := time.ParseDuration(n.Value); n.Value != "0" && (err != nil || d < 0) {
			p.add(n, path, "", "%s must be a duration such as 20ms or 2s, found %q", what, n.Value)
		}
	}
}

// checkMapping checks each key of mapping n against the keys field f knows, with did-you-mean for one
// it does not, and each value against its key's field.
func (p *fleetParser) checkMapping(n *yaml.Node, f *field, path, key string) {
	known := make([]string, 0, len(f.keys))
	for k := range f.keys {
		known = append(known, k)
	}
	slices.Sort(known)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			continue // a merge key: yaml.v3 merges it, and the merged keys are checked where written
		}
		kp := joinPath(path, k.Value)
		sub, ok := f.keys[k.Value]
		if !ok {
			hint := "known keys: " + strings.Join(known, ", ")
			if m := closestKey(k.Value, known); m != "" {
				hint = fmt.Sprintf("did you mean %q?", m)
			}
			where := ""
			if key != "" {
				where = " in " + key
			}
			p.add(k, kp, hint, "unknown key %q%s", k.Value, where)
			continue
		}
		p.check(v, sub, kp, k.Value)
	}
}

// nodeKind names what a node holds, for messages: never a Go or YAML type name.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return n.Value
		case "!!int", "!!float":
			return n.Value
		}
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// valueOf returns the value under key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// closestKey returns the known key that word most likely misspells (the same but for case, or at most
// two edits away), or "".
func closestKey(word string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, word) {
			return k
		}
		if d := editDistance(strings.ToLower(word), strings.ToLower(k)); d < bestD && d < len(k) {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
