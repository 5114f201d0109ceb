package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// plan50 writes a realistic 50-wave plan: a firmware twin update with verify, defaults, per-wave
// overrides, approvals and a schedule.
func plan50(tb testing.TB, dir string) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString(`# yaml-language-server: $schema=../../schema/plan.schema.json
version: 1
name: big-fleet-fw-7-0
description: fifty waves, one per region and ring
fleet: "tags.model = 'sensor-z' AND status = 'enabled'"
action:
  twinUpdate:
    tags: {fwChannel: stable}
    desired:
      firmware: {version: "7.0.0", uri: "https://example.invalid/fw/7.0.0.bin", sha256: "abcdef0123456789"}
defaults:
  timeout: 30m
  batch: {size: 200, growth: 2}
  success: {minSuccessRate: 98%, maxFailures: 20, minDevices: 20}
  bake: 10m
  verify:
    condition: "properties.reported.firmware.version = '7.0.0'"
    minRate: 95%
    within: 15m
waves:
  - name: canary
    target: "tags.ring = 'canary'"
    batch: {size: 20, growth: 1}
    success: {minSuccessRate: 100%, minDevices: 5}
`)
	for i := 1; i < 50; i++ {
		fmt.Fprintf(&b, "  - name: region-%02d\n    target: \"tags.region = 'r%02d' AND tags.site IN ['a%d', 'b%d']\"\n", i, i, i, i)
		if i%5 == 0 {
			b.WriteString("    approval: required\n    bake: 1h\n")
		}
		if i%7 == 0 {
			b.WriteString("    percent: 50\n    success: {minSuccessRate: 99%}\n")
		}
	}
	b.WriteString(`onFailure: rollback
schedule:
  notBefore: 2026-12-01T02:00:00Z
  windows:
    - {days: [mon, tue, wed, thu], start: "02:00", end: "05:00", timeZone: Europe/Berlin}
`)
	file := filepath.Join(dir, "plan50.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return file
}

// TestValidatePlan50 checks that the benchmark's plan is valid, so the benchmark measures the whole
// validation and not an early failure.
func TestValidatePlan50(t *testing.T) {
	file := plan50(t, t.TempDir())
	var out, errOut bytes.Buffer
	if code := Main([]string{"validate", file}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "valid: 50 waves") || strings.Contains(out.String(), "warning") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestValidateHugeFile checks that a 50 MB file is refused with a positioned error and exit 1,
// quickly and without reading it whole.
func TestValidateHugeFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "huge.yaml")
	line := []byte("waves: [] # padding padding padding padding padding padding padding padding\n")
	if err := os.WriteFile(file, bytes.Repeat(line, 50<<20/len(line)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	start := time.Now()
	code := Main([]string{"validate", file}, nil, &out, &errOut)
	// Parsing 50 MB of YAML would take far longer; the bound leaves room for a loaded CI machine.
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if code != exitInvalid || !strings.HasPrefix(out.String(), file+":1:1: error: plan is larger than 1048576 bytes") {
		t.Errorf("exit %d, output:\n%.500s", code, out.String())
	}
}

// BenchmarkValidateProcess50Waves measures `rollout validate` of a 50-wave plan as a whole process:
// start, schema compilation, loading, checks, output and exit. The binary is built once.
func BenchmarkValidateProcess50Waves(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "rollout")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	file := plan50(b, dir)
	b.ResetTimer()
	for b.Loop() {
		if out, err := exec.Command(bin, "validate", file).CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
}

// TestGitHubEscaping checks that messages and file names cannot break out of a workflow command.
func TestGitHubEscaping(t *testing.T) {
	cases := []struct{ in, data, prop string }{
		{"plain", "plain", "plain"},
		{"a%b", "a%25b", "a%25b"},
		{"line\nbreak\r", "line%0Abreak%0D", "line%0Abreak%0D"},
		{"x:y,z", "x:y,z", "x%3Ay%2Cz"},
	}
	for _, c := range cases {
		if got := ghData(c.in); got != c.data {
			t.Errorf("ghData(%q) = %q, want %q", c.in, got, c.data)
		}
		if got := ghProperty(c.in); got != c.prop {
			t.Errorf("ghProperty(%q) = %q, want %q", c.in, got, c.prop)
		}
	}
}

// TestCaretPad checks that the caret lands under the column, tabs and wide characters included.
func TestCaretPad(t *testing.T) {
	cases := []struct {
		line string
		col  int
		want string
	}{
		{"abc", 1, ""},
		{"abc", 3, "  "},
		{"\tab", 3, "\t "},
		{"éé x", 4, "   "},
		{"ab", 5, "    "}, // just past the end of the line
	}
	for _, c := range cases {
		if got := caretPad(c.line, c.col); got != c.want {
			t.Errorf("caretPad(%q, %d) = %q, want %q", c.line, c.col, got, c.want)
		}
	}
}

// TestSnippet checks that long source lines are cut around the column, with the caret still under it.
func TestSnippet(t *testing.T) {
	long := strings.Repeat("a", 300) + "X" + strings.Repeat("b", 300)
	cases := []struct {
		line     string
		col      int
		wantCol  int
		wantCut  bool
		wantChar rune
	}{
		{"short line", 3, 3, false, 'o'},
		{long, 301, 62, true, 'X'},
		{long, 1, 1, true, 'a'},
		{long, 601, 62, true, 'b'},
	}
	for _, c := range cases {
		got, col := snippet(c.line, c.col)
		r := []rune(got)
		if col != c.wantCol || r[col-1] != c.wantChar || (got != c.line) != c.wantCut {
			t.Errorf("snippet(%.10q..., %d) = %.20q... col %d (char %q)", c.line, c.col, got, col, r[col-1])
		}
		if len(r) > 2*snippetWidth+2 {
			t.Errorf("snippet is %d characters long", len(r))
		}
	}
}

// TestValidateInvalidFixtures runs every invalid plan of testdata/plan through the command: each exits
// 1 in every format, and the text output carries every diagnostic the loader finds (whose exact form
// the plan package's golden files pin).
func TestValidateInvalidFixtures(t *testing.T) {
	files, err := filepath.Glob("../../testdata/plan/*.yaml")
	if err != nil || len(files) < 30 {
		t.Fatalf("found %d fixtures (%v)", len(files), err)
	}
	for _, file := range files {
		_, ds := plan.LoadFile(file)
		if !ds.HasErrors() {
			t.Fatalf("%s: fixture has no error", file)
		}
		for _, format := range validateFormats {
			var out, errOut bytes.Buffer
			if code := Main([]string{"validate", "--format", format, file}, nil, &out, &errOut); code != exitInvalid {
				t.Errorf("%s --format %s: exit %d, want %d", file, format, code, exitInvalid)
			}
			if errOut.Len() > 0 {
				t.Errorf("%s --format %s: stderr %q", file, format, errOut.String())
			}
			if format != "text" {
				continue
			}
			for _, d := range ds {
				d.Hint = "" // printed on a line of its own
				if !strings.Contains(out.String(), d.String()+"\n") {
					t.Errorf("%s: output lacks %q", file, d.String())
				}
			}
		}
	}
}
