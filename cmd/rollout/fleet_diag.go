package main

import (
	"errors"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/plan"
)

// fleetDiagnostics converts the problems of a fleet file (a *emulator.FleetError in err's chain) into
// diagnostics, every one an error, so that the CLI renders them exactly as it renders a plan's. It
// returns false for any other error, such as a fleet file that could not be read.
func fleetDiagnostics(err error) (plan.Diagnostics, bool) {
	var fe *emulator.FleetError
	if !errors.As(err, &fe) {
		return nil, false
	}
	ds := make(plan.Diagnostics, 0, len(fe.Problems))
	for _, p := range fe.Problems {
		ds = append(ds, plan.Diagnostic{Severity: plan.Error, File: fe.File, Line: p.Line, Col: p.Col,
			Path: p.Path, Message: p.Message, Hint: p.Hint})
	}
	return ds, true
}

// printDiagnostics writes diags to standard error as `rollout validate` writes them in text format:
// file:line:col: severity: path: message, the source line with a caret under the column, and the
// hint. The source lines are read from the files the diagnostics name (at most plan.MaxSize bytes of
// each); standard input and files that cannot be read are shown without them.
func printDiagnostics(e *env, diags plan.Diagnostics) {
	printDiagnosticsWith(e, diags, nil)
}

// printDiagnosticsWith is printDiagnostics given the sources already read, by file name: a plan read
// from standard input cannot be read again, and one read from a file is shown as it was loaded.
func printDiagnosticsWith(e *env, diags plan.Diagnostics, sources map[string][]byte) {
	for len(diags) > 0 {
		// Diagnostics come sorted by file; render each file's run with its source.
		file := diags[0].File
		n := 1
		for n < len(diags) && diags[n].File == file {
			n++
		}
		src, ok := sources[file]
		if !ok && file != "-" {
			src, _ = plan.ReadFile(file)
		}
		writeDiagnostics(e.stderr, src, diags[:n])
		diags = diags[n:]
	}
}
