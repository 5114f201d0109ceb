package plan

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// TestValuePos checks that offsets into decoded scalars map back to where they were written, for
// every scalar style, and that a style this decoder does not model falls back to the scalar's start.
func TestValuePos(t *testing.T) {
	cases := []struct {
		name      string
		src       string
		off       int // byte offset into the decoded value
		line, col int
		exact     bool
	}{
		{"plain", "c: tags.x = 1\n", 7, 1, 11, true},
		{"plain end", "c: tags.x = 1\n", 10, 1, 14, true},
		{"plain folded", "c: tags.x = 1\n  AND tags.y = 2\n", 11, 2, 3, true}, // "AND" after the folded space
		{"plain folded space", "c: tags.x = 1   \n  AND tags.y = 2\n", 10, 1, 17, true},
		{"single quoted", "c: 'a = ''b'' AND c'\n", 10, 1, 17, true},
		{"single quoted folded", "c: 'a = 1\n\n   AND b'\n", 6, 3, 4, true},
		{"double quoted escapes", `c: "a = \"b\" \u00e9 x"` + "\n", 11, 1, 22, true},
		{"double quoted tab escape", `c: "a\tb = 1"` + "\n", 2, 1, 8, true},
		{"double quoted line join", "c: \"tags.x \\\n   = 1\"\n", 7, 2, 4, true},
		{"literal", "c: |\n  a = 1\n  AND b = 2\n", 6, 3, 3, true},
		{"literal end", "c: |\n  a = 1\n  AND b = 2\n", 16, 3, 12, true},
		{"literal more indented", "c: |\n  a = 1\n    AND b\n", 8, 3, 5, true},
		{"folded", "c: >\n  a = 1\n  AND b = 2\n", 6, 3, 3, true},
		{"folded blank line", "c: >-\n  a = 1\n\n  AND b\n", 6, 4, 3, true},
		{"anchored", "c: &x tags.x = 1\n", 5, 1, 12, true},
		{"tagged", "c: !!str tags.x = 1\n", 0, 1, 10, true},
		{"multibyte", "c: tags.é = 'é' AND\n", 15, 1, 17, true},
		{"explicit indentation falls back", "c: |2\n    a = 1\n", 0, 1, 4, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(c.src), &doc); err != nil {
				t.Fatal(err)
			}
			n := doc.Content[0].Content[1]
			l := &loader{src: []byte(c.src)}
			line, col, exact := l.valuePos(n, c.off)
			if line != c.line || col != c.col || exact != c.exact {
				t.Errorf("value %q offset %d: got %d:%d exact=%v, want %d:%d exact=%v", n.Value, c.off, line, col, exact, c.line, c.col, c.exact)
			}
			// Every letter and digit of the value must map onto the same byte in the source.
			if pos, ok := l.decodePositions(n); ok {
				for i := range len(n.Value) {
					b := n.Value[i]
					if (b >= 'a' && b <= 'z' || b >= '0' && b <= '9') && c.src[pos[i]] != b {
						t.Errorf("value byte %d %q maps to source byte %q", i, b, c.src[pos[i]])
					}
				}
			}
		})
	}
}
