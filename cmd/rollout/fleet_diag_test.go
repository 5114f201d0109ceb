package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/plan"
)

func TestFleetDiagnostics(t *testing.T) {
	_, err := emulator.ParseFleet("fleet.yaml", []byte("groups:\n  - name: a\n    count: 1\n    idprefix: a-\n"))
	for _, wrapped := range []error{err, fmt.Errorf("--emulate: %w", err)} {
		ds, ok := fleetDiagnostics(wrapped)
		want := plan.Diagnostic{Severity: plan.Error, File: "fleet.yaml", Line: 4, Col: 5, Path: "groups[0].idprefix",
			Message: `unknown key "idprefix" in group`, Hint: `did you mean "idPrefix"?`}
		if !ok || len(ds) != 1 || ds[0] != want {
			t.Errorf("fleetDiagnostics(%v) = %+v, %v; want [%+v], true", wrapped, ds, ok, want)
		}
	}
	if ds, ok := fleetDiagnostics(errors.New("fleet: open x.yaml: no such file or directory")); ok || ds != nil {
		t.Errorf("a plain error gave %+v, %v; want nil, false", ds, ok)
	}
}

// TestPrintDiagnostics checks that fleet problems render as `rollout validate` renders a plan's: the
// source line read from the fleet file, a caret under the column, and the hint.
func TestPrintDiagnostics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(path, []byte("groups:\n  - name: a\n    count: many\n    idprefix: a-\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := emulator.LoadFleet(path)
	ds, ok := fleetDiagnostics(err)
	if !ok {
		t.Fatalf("LoadFleet: %v, want a *emulator.FleetError", err)
	}
	var stderr bytes.Buffer
	printDiagnostics(&env{stderr: &stderr}, ds)
	want := path + `:3:12: error: groups[0].count: count must be a whole number, found "many"
     3 |     count: many
       |            ^
` + path + `:4:5: error: groups[0].idprefix: unknown key "idprefix" in group
     4 |     idprefix: a-
       |     ^
       = hint: did you mean "idPrefix"?
`
	if stderr.String() != want {
		t.Errorf("printDiagnostics wrote\n%s\nwant\n%s", stderr.String(), want)
	}
}

// TestLoadPlanRendersLikeValidate checks that apply and plan show an invalid plan's diagnostics exactly
// as `rollout validate` does, even for a plan read from standard input, then the pointer to validate.
func TestLoadPlanRendersLikeValidate(t *testing.T) {
	src := []byte("version: 1\nname: bad\naction: {twinUpdate: {tags: {ring: done}}}\nwaves:\n  - name: canary\n    sucess: {minSuccessRate: 100%}\n")
	for _, file := range []string{"-", "bad.yaml"} {
		var stderr, validate bytes.Buffer
		if p := loadPlan(&env{stderr: &stderr}, "apply", file, src); p != nil {
			t.Fatalf("%s: loadPlan accepted an invalid plan", file)
		}
		_, ds := plan.Load(file, src)
		writeText(&validate, []validated{{file: file, src: src, diags: ds}})
		want := validate.String() + "rollout apply: the plan is invalid; `rollout validate` shows the details\n"
		if stderr.String() != want {
			t.Errorf("%s: loadPlan wrote\n%s\nwant\n%s", file, stderr.String(), want)
		}
		if !strings.Contains(stderr.String(), "       |     ^\n       = hint: did you mean \"success\"?\n") {
			t.Errorf("%s: no caret and hint in\n%s", file, stderr.String())
		}
	}
}
