package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity says whether a diagnostic makes a plan invalid.
type Severity string

// The severities. Only errors make a plan invalid; warnings flag risky but legal plans.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Diagnostic is one problem found in a plan. Line and Col are 1-based; Col counts characters (runes),
// not bytes, as YAML does. Line is 0 when the problem has no position (an unreadable file). Path is
// the problem's place in the document, such as waves[2].success.minSuccessRate, or "" for the whole
// document. Message says what is wrong; Hint, when not empty, what to do about it.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Col      int      `json:"col"`
	Path     string   `json:"path"`
	Message  string   `json:"message"`
	Hint     string   `json:"hint,omitempty"`
}

// String renders d on one line: file:line:col: severity: path: message (hint).
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Col)
	}
	fmt.Fprintf(&b, ": %s: ", d.Severity)
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	if d.Hint != "" {
		fmt.Fprintf(&b, " (%s)", d.Hint)
	}
	return b.String()
}

// Diagnostics is the list of problems found in one or more plans.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error (warnings alone leave a plan valid).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Error renders every diagnostic, one per line, so that Diagnostics can travel as an error.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// sortDedup orders diagnostics by file and position (then path and message, so the order is stable)
// and drops exact repeats, which arise when a shared defaults value is judged once per wave.
func (ds Diagnostics) sortDedup() Diagnostics {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Severity, b.Severity),
			cmp.Compare(a.Message, b.Message),
		)
	})
	return slices.Compact(ds)
}
