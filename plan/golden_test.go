package plan_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/plan"
)

var update = flag.Bool("update", false, "rewrite the expected diagnostics of testdata/plan from the current output")

// TestInvalidPlans loads every plan under testdata/plan and compares its diagnostics, one per line,
// with the .golden file beside it. Every one of these plans must be invalid.
func TestInvalidPlans(t *testing.T) {
	files, err := filepath.Glob("../testdata/plan/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d invalid plans, want at least 30", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, ds := plan.Load(filepath.Base(file), data)
			if p != nil || !ds.HasErrors() {
				t.Errorf("plan loaded without errors; every plan here must be invalid")
			}
			var got strings.Builder
			for _, d := range ds {
				got.WriteString(d.String())
				got.WriteString("\n")
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./plan -run TestInvalidPlans -update to create it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("diagnostics differ from %s\n--- got:\n%s--- want:\n%s", golden, got.String(), want)
			}
		})
	}
}
