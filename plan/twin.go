package plan

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Twin content rules (reference: IoT Hub device twin documentation, "Twin content rules"). Where the
// documentation changed over time the current, larger limits are used, except for depth, where the
// stricter reading is kept (see maxTwinDepth).
const (
	maxTagsSize    = 8 << 10  // bytes of tags, as the hub counts them
	maxDesiredSize = 32 << 10 // bytes of desired properties
	maxKeyBytes    = 1 << 10  // bytes of one property name
	maxStringBytes = 4 << 10  // bytes of one string value
	// maxTwinDepth bounds nesting. The hub documents "at most 10 levels of nested objects"; whether
	// the section itself counts is not stated, so the stricter reading is enforced: a property path
	// under tags or desired holds at most 10 names (a.b.c is 3).
	maxTwinDepth = 10
	// Integers the hub stores exactly.
	minTwinInt = -4503599627370496
	maxTwinInt = 4503599627370495
)

// twinSection checks a tags or desired mapping against the twin rules and returns it as
// encoding/json would decode it. Arrays draw a warning, not an error: the documented rules forbid
// them, but newer hubs are reported to accept them (unconfirmed).
func (c *checker) twinSection(r ref, section string, maxSize int) map[string]any {
	if !r.ok() || deref(r.node).Kind != yaml.MappingNode {
		return nil
	}
	size := c.twinWalk(deref(r.node), r.path, 1)
	if size > maxSize {
		c.add(Error, r.at(), r.path, "move bulky settings to a file the device downloads, and send its URI",
			"%s are %d bytes as IoT Hub counts them; a twin allows at most %d", section, size, maxSize)
	}
	v, _ := c.jsonOf(r.node, r.path)
	m, _ := v.(map[string]any)
	return m
}

// twinWalk checks one mapping at the given depth and returns its size as the hub counts it: the
// UTF-8 length of each key plus its value's size (numbers 8 bytes, booleans 4, strings their UTF-8
// length without control characters, null 0).
func (c *checker) twinWalk(m *yaml.Node, path string, depth int) int {
	size := 0
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		kp := keyPath(path, k.Value)
		if msg := twinKeyProblem(k.Value); msg != "" {
			c.add(Error, m.Content[i], kp, "IoT Hub twin property names may not contain '.', '$', spaces or control characters, and are at most 1 KB",
				"property name %s", msg)
		}
		if depth > maxTwinDepth {
			c.add(Error, m.Content[i], kp, "flatten the structure", "twin properties may be nested at most %d levels deep", maxTwinDepth)
			continue
		}
		size += len(k.Value) + c.twinValue(v, kp, depth)
	}
	return size
}

func (c *checker) twinValue(v *yaml.Node, path string, depth int) int {
	switch v.Kind {
	case yaml.MappingNode:
		return c.twinWalk(v, path, depth+1)
	case yaml.SequenceNode:
		c.add(Warning, v, path, "use an object keyed by name instead, unless your hub is known to accept arrays",
			"IoT Hub documents twin values as boolean, number, string or object; arrays may be rejected")
		size := 0
		for i, e := range v.Content {
			size += c.twinValue(deref(e), indexPath(path, i), depth)
		}
		return size
	}
	switch v.ShortTag() {
	case "!!null":
		return 0
	case "!!bool":
		return 4
	case "!!int":
		if i, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 64); err != nil || i < minTwinInt || i > maxTwinInt {
			var f float64
			if err := v.Decode(&f); err != nil || f < minTwinInt || f > maxTwinInt {
				c.add(Error, v, path, "write it as a string", "integer %s is outside the range a twin stores exactly (±4503599627370495)", v.Value)
			}
		}
		return 8
	case "!!float":
		return 8
	}
	n := 0
	for _, r := range v.Value {
		if r >= 0x20 && !(r >= 0x7f && r <= 0x9f) {
			n += utf8.RuneLen(r)
		}
	}
	if len(v.Value) > maxStringBytes {
		c.add(Error, v, path, "send a URI to the data instead", "string value is %d bytes; a twin value holds at most %d", len(v.Value), maxStringBytes)
	}
	return n
}

// twinKeyProblem says what is wrong with a twin property name, or "" when it is fine.
func twinKeyProblem(k string) string {
	if k == "" {
		return "is empty"
	}
	if len(k) > maxKeyBytes {
		return fmt.Sprintf("is %d bytes long (at most %d)", len(k), maxKeyBytes)
	}
	for _, r := range k {
		switch {
		case r == '.', r == '$', r == ' ':
			return fmt.Sprintf("%q contains %q", k, r)
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return fmt.Sprintf("%q contains control character U+%04X", k, r)
		}
	}
	return ""
}
