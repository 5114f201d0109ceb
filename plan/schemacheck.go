package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
	"gopkg.in/yaml.v3"

	"github.com/iot-rollout/rollout/schema"
)

// compiledSchema is the embedded schema, compiled once per process, beside its raw JSON which supplies
// the wording of messages (errorMessage, enum values, known keys for "did you mean").
var compiledSchema = sync.OnceValues(func() (*compiled, error) {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft7
	if err := c.AddResource(schema.URL, bytes.NewReader(schema.Plan)); err != nil {
		return nil, err
	}
	s, err := c.Compile(schema.URL)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(schema.Plan, &raw); err != nil {
		return nil, err
	}
	return &compiled{schema: s, raw: raw}, nil
})

type compiled struct {
	schema *jsonschema.Schema
	raw    map[string]any
}

// at returns the raw schema object at a JSON pointer such as /$defs/wave.
func (c *compiled) at(ptr string) map[string]any {
	var cur any = c.raw
	for _, seg := range splitPointer(ptr) {
		switch x := cur.(type) {
		case map[string]any:
			cur = x[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			cur = x[i]
		default:
			return nil
		}
	}
	m, _ := cur.(map[string]any)
	return m
}

// splitPointer splits a JSON pointer into unescaped segments.
func splitPointer(ptr string) []string {
	ptr = strings.TrimPrefix(ptr, "/")
	if ptr == "" {
		return nil
	}
	segs := strings.Split(ptr, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return segs
}

// validateSchema checks value against the embedded schema and maps every failure back to a node.
func (l *loader) validateSchema(value any) {
	c, err := compiledSchema()
	if err != nil {
		// The schema is embedded and tested; failing to compile it is a build defect.
		l.addAt(Error, 1, 1, "", "", "internal error: plan schema does not compile: "+err.Error())
		return
	}
	err = c.schema.Validate(value)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		if err != nil {
			l.addAt(Error, 1, 1, "", "", "internal error: "+err.Error())
		}
		return
	}
	for _, leaf := range leaves(ve, nil) {
		l.schemaError(c, leaf)
	}
}

// leaves collects the innermost validation errors: the schema has no oneOf or anyOf, so every leaf is a
// real, separate problem.
func leaves(ve *jsonschema.ValidationError, out []*jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return append(out, ve)
	}
	for _, c := range ve.Causes {
		out = leaves(c, out)
	}
	return out
}

// schemaError reports one schema failure at the node it concerns, worded for a person.
func (l *loader) schemaError(c *compiled, ve *jsonschema.ValidationError) {
	loc := ve.AbsoluteKeywordLocation
	if i := strings.IndexByte(loc, '#'); i >= 0 {
		loc = loc[i+1:]
	}
	keyword, schemaPtr := loc, ""
	if i := strings.LastIndexByte(loc, '/'); i >= 0 {
		keyword, schemaPtr = loc[i+1:], loc[:i]
	}
	sch := c.at(schemaPtr)
	key, node, path := l.locate(ve.InstanceLocation)
	if node == nil {
		l.addAt(Error, 1, 1, path, "", ve.Message)
		return
	}
	switch keyword {
	case "additionalProperties":
		l.unknownKeys(c, node, path, sch)
		return
	case "required":
		l.missingKeys(key, node, path, sch)
		return
	}
	msg := ""
	if em, ok := sch["errorMessage"].(string); ok {
		msg = em
	}
	hint := ""
	switch keyword {
	case "type":
		if msg == "" {
			msg = fmt.Sprintf("must be %s", typeName(sch["type"]))
		}
		msg += fmt.Sprintf(", found %s", kindName(node))
	case "enum":
		values := enumStrings(sch["enum"])
		if msg == "" {
			msg = "must be one of " + strings.Join(values, ", ")
		}
		if s := deref(node); s.Kind == yaml.ScalarNode {
			if m := closest(s.Value, values); m != "" {
				hint = fmt.Sprintf("did you mean %q?", m)
			}
		}
	case "const":
		if msg == "" {
			msg = fmt.Sprintf("must be %v", sch["const"])
		}
	case "pattern":
		if msg == "" {
			msg = fmt.Sprintf("must match the pattern %s", sch["pattern"])
		}
	case "minItems":
		if msg == "" {
			msg = fmt.Sprintf("must list at least %v %s", sch["minItems"], plural(sch["minItems"], "item"))
			if path == "waves" {
				msg = "a plan needs at least one wave"
			}
		}
	case "maxItems":
		if msg == "" {
			msg = fmt.Sprintf("must list at most %v %s", sch["maxItems"], plural(sch["maxItems"], "item"))
		}
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		if msg == "" {
			words := map[string]string{"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}
			msg = fmt.Sprintf("must be %s %v", words[keyword], sch[keyword])
		}
		msg += fmt.Sprintf(", found %s", deref(node).Value)
	case "minLength":
		if msg == "" {
			msg = "must not be empty"
		}
	case "uniqueItems":
		if msg == "" {
			msg = "must not repeat an item: " + ve.Message
		}
	default:
		if msg == "" {
			msg = ve.Message
		}
	}
	l.add(Error, node, path, hint, "%s", msg)
}

// unknownKeys reports each key of a mapping that its schema does not know, suggesting the closest
// known key.
func (l *loader) unknownKeys(c *compiled, node *yaml.Node, path string, sch map[string]any) {
	props, _ := sch["properties"].(map[string]any)
	known := make([]string, 0, len(props))
	for k := range props {
		known = append(known, k)
	}
	slices.Sort(known)
	m := deref(node)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if _, ok := props[k.Value]; ok {
			continue
		}
		hint := ""
		switch {
		case strings.HasSuffix(path, "twinUpdate") && (k.Value == "reported" || k.Value == "properties"):
			hint = "a twin update sets only tags and desired (written directly under twinUpdate); reported properties belong to the device"
		default:
			if s := closest(k.Value, known); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			} else if parent := nestedOwner(c, props, k.Value); parent != "" {
				hint = fmt.Sprintf("%s belongs under %s: write %s: {%s: ...}", k.Value, parent, parent, k.Value)
			} else if top, _ := c.raw["properties"].(map[string]any); top[k.Value] != nil && path != "" {
				hint = fmt.Sprintf("%s is set once for the whole plan, at the top level", k.Value)
			} else {
				hint = "known keys: " + strings.Join(known, ", ")
			}
		}
		l.add(Error, m.Content[i], keyPath(path, k.Value), hint, "unknown key %q", k.Value)
	}
}

// missingKeys reports each required key a mapping lacks, at the key that holds the mapping.
func (l *loader) missingKeys(key, node *yaml.Node, path string, sch map[string]any) {
	req, _ := sch["required"].([]any)
	at := key
	if at == nil {
		at = node
	}
	for _, r := range req {
		name, _ := r.(string)
		if k, _ := lookup(node, name); k == nil {
			l.add(Error, at, path, "", "missing required key %q", name)
		}
	}
}

// locate finds the node a JSON pointer names, with the mapping key that holds it (nil for list items
// and the root) and its document path.
func (l *loader) locate(ptr string) (key, node *yaml.Node, path string) {
	node = l.root
	for _, seg := range splitPointer(ptr) {
		n := deref(node)
		switch n.Kind {
		case yaml.MappingNode:
			k, v := lookup(n, seg)
			if k == nil {
				return key, node, path
			}
			key, node, path = k, v, keyPath(path, seg)
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return key, node, path
			}
			key, node, path = nil, n.Content[i], indexPath(path, i)
		default:
			return key, node, path
		}
	}
	return key, node, path
}

// lookup returns the first key node named name in mapping m, and its value.
func lookup(m *yaml.Node, name string) (key, value *yaml.Node) {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := deref(m.Content[i]); k.Kind == yaml.ScalarNode && k.Value == name {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func typeName(t any) string {
	switch t {
	case "object":
		return "a mapping"
	case "array":
		return "a list"
	case "integer":
		return "a whole number"
	case "number":
		return "a number"
	case "boolean":
		return "true or false"
	case "string":
		return "a string"
	}
	return fmt.Sprint(t)
}

func enumStrings(e any) []string {
	list, _ := e.([]any)
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// closest returns the candidate nearest to word when it is near enough to be a likely typo (same
// letters in another case, or at most a third of the word's letters edited), or "".
func closest(word string, candidates []string) string {
	best, bestDist := "", -1
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(lw, strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > max(1, len([]rune(word))/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// nestedOwner returns the property of an object schema whose own object schema knows key, such as
// "success" for minSuccessRate written directly in a wave, or "".
func nestedOwner(c *compiled, props map[string]any, key string) string {
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		sub, _ := props[name].(map[string]any)
		if ref, ok := sub["$ref"].(string); ok {
			sub = c.at(strings.TrimPrefix(ref, "#"))
		}
		inner, _ := sub["properties"].(map[string]any)
		if _, ok := inner[key]; ok {
			return name
		}
	}
	return ""
}

// plural gives noun for a count of 1 and noun+"s" for any other count (a schema number, as decoded).
func plural(n any, noun string) string {
	if fmt.Sprint(n) == "1" {
		return noun
	}
	return noun + "s"
}
