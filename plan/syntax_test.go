package plan

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestScanSyntaxQuietOnValidYAML keeps scanSyntax from inventing problems: in every YAML file of the
// repository that yaml.v3 parses (plans, fleets, fixtures whose problems are not syntax), it must find
// none, since its finding replaces the parser's own message.
func TestScanSyntaxQuietOnValidYAML(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../plans/examples/*.yaml", "../testdata/plan/*.yaml", "../testdata/fleets/*.yaml", "../emulator/testdata/*.yaml", "../.github/workflows/*.yml"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	inputs := map[string][]byte{
		"block scalars":    []byte("a: |\n  x: 'y\n   {z\nb: >-\n    \"q\nc: x - y\n"),
		"anchor and alias": []byte("a: &x\n  b: 1\nc: *x\nd: !!str\n  5\n"),
		"multi-line plain": []byte("description: a long\n  text that continues\n  on, it's fine\nname: x\n"),
		"quotes":           []byte("a: 'it''s'\nb: \"say \\\"hi\\\"\" # it's a comment\nc: don't {do} [this]\n'd': 1\n\"e\": 2\n"),
		"urls and colons":  []byte("uri: https://example.invalid/fw:2\nt: 02:00\nf: {a: http://x, b: [1, 2]}\n"),
		"multi-line flow":  []byte("a: {b: 1,\n  c: [1,\n    2]}\nd: [\n  x,\n]\n"),
		"multi-line quote": []byte("a: \"one\n  two\"\nb: 'three\n  four'\n"),
		"compact sequence": []byte("waves:\n- name: a\n  target: b\n-   name: c\n    x:\n      - 1\n      - - 2\n        - 3\n"),
		"compact then key": []byte("waves:\n- name: a\n  x: 1\n- b\nother: 1\nlist:\n- - x\n  - y\nlast:\n  - z\nend: 1\n"),
		"complex key":      []byte("? [a, b]\n: c\n"),
		"documents":        []byte("---\na: 1\n...\n---\n  b: 2\n"),
		"scalar document":  []byte("just text\n"),
		"empty values":     []byte("a:\nb:\n  c:\n  d: # nothing\ne: ~\n"),
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inputs[file] = data
	}
	checked := 0
	for file, data := range inputs {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		valid := true
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				valid = err.Error() == "EOF"
				break
			}
		}
		if !valid {
			if !strings.HasPrefix(file, "../") {
				t.Errorf("%s: the case is not valid YAML", file)
			}
			continue
		}
		checked++
		if p, ok := scanSyntax(data); ok {
			t.Errorf("%s:%d:%d: parses, but scanSyntax reports %s", file, p.line, p.col, p.msg)
		}
	}
	if checked < 50 {
		t.Errorf("checked %d valid YAML files, want at least 50", checked)
	}
}

// FuzzScanSyntax checks scanSyntax against yaml.v3: on input that parses, it must find no problem
// (its finding would hide the real one when a later part of a file is broken), and it must not panic.
func FuzzScanSyntax(f *testing.F) {
	for _, pattern := range []string{"../plans/examples/*.yaml", "../testdata/plan/*.yaml", "../testdata/fleets/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil && len(data) < 16<<10 {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, found := scanSyntax(data)
		if !found {
			return
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			if err := dec.Decode(&n); err != nil {
				if err == io.EOF {
					t.Fatalf("parses, but scanSyntax reports %d:%d: %s", p.line, p.col, p.msg)
				}
				return
			}
		}
	})
}
