package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/iot-rollout/rollout/plan"
	"github.com/spf13/cobra"
)

// validateOptions is what `rollout validate` was asked to do.
type validateOptions struct {
	format string   // text, json, github or markdown
	files  []string // plan paths; "-" reads standard input
}

var validateFormats = []string{"text", "json", "github", "markdown"}

func newValidateCmd(e *env) *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate [flags] PLAN...",
		Short: "check plans offline: schema, semantics, conditions (no hub needed)",
		Long: "Checks plans offline: the JSON Schema, the semantics (disjoint waves, gates, budgets) and every query\n" +
			"condition's syntax, and reports every problem with file:line:col, a path into the plan and a hint.\n" +
			"PLAN - reads standard input. Exit 0 when every plan is valid (warnings allowed), 1 otherwise.",
		Example: examples(
			"rollout validate plans/examples/*.yaml",
			"rollout validate --format github plans/thermostat.yaml   # annotations in a GitHub workflow",
			"cat plan.yaml | rollout validate --format json -"),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("no plan given")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !contains(validateFormats, o.format) {
				return usagef("unknown --format %q: want one of %s", o.format, strings.Join(validateFormats, ", "))
			}
			o.files = args
			return exitWith(runValidate(e, o))
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: "+strings.Join(validateFormats, ", "))
	return cmd
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validated is one plan's outcome, with its source kept for snippets.
type validated struct {
	file  string
	src   []byte
	plan  *plan.Plan
	diags plan.Diagnostics
}

// runValidate validates every plan given and exits 0 when all are valid (warnings allowed), 1 when
// any has an error or the command line is wrong.
func runValidate(e *env, o *validateOptions) int {
	results := make([]validated, 0, len(o.files))
	for _, f := range o.files {
		results = append(results, validateOne(e, f))
	}
	switch o.format {
	case "json":
		writeJSON(e.stdout, results)
	case "github":
		writeGitHub(e.stdout, results)
	case "markdown":
		writeMarkdown(e.stdout, results)
	default:
		writeText(e.stdout, results)
	}
	for _, r := range results {
		if r.diags.HasErrors() {
			return exitInvalid
		}
	}
	return exitOK
}

func validateOne(e *env, file string) validated {
	data, err := readPlan(e, file)
	if err != nil {
		return validated{file: file, diags: plan.Diagnostics{{Severity: plan.Error, File: file, Message: err.Error()}}}
	}
	p, ds := plan.Load(file, data)
	return validated{file: file, src: data, plan: p, diags: ds}
}

// displayName names a plan file for people: standard input is "<stdin>".
func displayName(file string) string {
	if file == "-" {
		return "<stdin>"
	}
	return file
}

// writeText prints each diagnostic as writeDiagnostics does; a valid plan gets one summary line.
func writeText(w io.Writer, results []validated) {
	for _, r := range results {
		writeDiagnostics(w, r.src, r.diags)
		if r.plan != nil {
			warnings := ""
			if n := len(r.diags); n > 0 {
				warnings = ", " + count(n, "warning")
			}
			fmt.Fprintf(w, "%s: valid: %s, hash %.8s%s\n", displayName(r.file), count(len(r.plan.Waves), "wave"), r.plan.Hash, warnings)
		}
	}
}

// writeDiagnostics prints each diagnostic as file:line:col: severity: path: message, then the line of
// src it points at with a caret under the column, then the hint. src is the source of the file the
// diagnostics name; with nil (or text that is not a readable plan) the snippets are left out.
func writeDiagnostics(w io.Writer, src []byte, diags plan.Diagnostics) {
	lines := strings.Split(string(src), "\n")
	for _, d := range diags {
		d.File = displayName(d.File)
		hint := d.Hint
		d.Hint = ""
		fmt.Fprintln(w, d.String())
		if src != nil && d.Line >= 1 && d.Line <= len(lines) && len(src) <= plan.MaxSize && utf8.Valid(src) {
			text, col := snippet(strings.TrimRight(lines[d.Line-1], "\r"), d.Col)
			fmt.Fprintf(w, "%6d | %s\n", d.Line, text)
			fmt.Fprintf(w, "%6s | %s^\n", "", caretPad(text, col))
		}
		if hint != "" {
			fmt.Fprintf(w, "%6s = hint: %s\n", "", hint)
		}
	}
}

// count renders n with noun, plural when n is not 1: "1 wave", "3 waves".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// snippetWidth is how many characters of a long source line are shown either side of the column.
const snippetWidth = 60

// snippet cuts a long source line (a condition on one line, say) down to the part around col, marking
// the cuts with "…", and returns the column's place in what is left.
func snippet(line string, col int) (string, int) {
	runes := []rune(line)
	if len(runes) <= 2*snippetWidth+20 {
		return line, col
	}
	from := max(0, col-1-snippetWidth)
	to := min(len(runes), col-1+snippetWidth)
	out := string(runes[from:to])
	if from > 0 {
		out = "…" + out
		col = col - from + 1
	}
	if to < len(runes) {
		out += "…"
	}
	return out, col
}

// caretPad is the whitespace that puts a caret under column col (1-based, in runes) of line, keeping
// tabs so the caret lines up however the terminal renders them.
func caretPad(line string, col int) string {
	var b strings.Builder
	i := 1
	for _, r := range line {
		if i >= col {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
		i++
	}
	for ; i < col; i++ {
		b.WriteByte(' ')
	}
	return b.String()
}

// writeJSON prints every diagnostic of every plan as one JSON list ([] when there are none).
func writeJSON(w io.Writer, results []validated) {
	all := plan.Diagnostics{}
	for _, r := range results {
		all = append(all, r.diags...)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(all)
}

// writeGitHub prints GitHub Actions workflow commands, so a pull request shows each diagnostic inline
// on the plan's line.
func writeGitHub(w io.Writer, results []validated) {
	for _, r := range results {
		for _, d := range r.diags {
			props := "file=" + ghProperty(displayName(d.File))
			if d.Line > 0 {
				props += fmt.Sprintf(",line=%d,col=%d", d.Line, d.Col)
			}
			props += ",title=" + ghProperty("rollout validate")
			msg := d.Message
			if d.Path != "" {
				msg = d.Path + ": " + msg
			}
			if d.Hint != "" {
				msg += " (" + d.Hint + ")"
			}
			fmt.Fprintf(w, "::%s %s::%s\n", d.Severity, props, ghData(msg))
		}
	}
}

// ghData escapes a workflow command's message.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProperty escapes a workflow command's property value.
func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// writeMarkdown prints a table suitable for a pull-request comment.
func writeMarkdown(w io.Writer, results []validated) {
	total := 0
	for _, r := range results {
		total += len(r.diags)
	}
	if total == 0 {
		if len(results) == 1 {
			fmt.Fprintln(w, "The plan is valid.")
		} else {
			fmt.Fprintf(w, "All %d plans are valid.\n", len(results))
		}
		return
	}
	fmt.Fprintln(w, "| | Location | Problem |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	cell := strings.NewReplacer("|", `\|`, "\n", " ", "`", "'")
	for _, r := range results {
		for _, d := range r.diags {
			icon := ":x:"
			if d.Severity == plan.Warning {
				icon = ":warning:"
			}
			loc := displayName(d.File)
			if d.Line > 0 {
				loc += fmt.Sprintf(":%d:%d", d.Line, d.Col)
			}
			msg := d.Message
			if d.Path != "" {
				msg = "`" + cell.Replace(d.Path) + "`: " + cell.Replace(msg)
			} else {
				msg = cell.Replace(msg)
			}
			if d.Hint != "" {
				msg += " — " + cell.Replace(d.Hint)
			}
			fmt.Fprintf(w, "| %s | `%s` | %s |\n", icon, cell.Replace(loc), msg)
		}
	}
}
