package plan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// FuzzLoad feeds arbitrary bytes to the loader. Whatever the input, Load must not panic (its recover
// would turn a panic into an "internal error" diagnostic, which fails here), must return a plan exactly
// when there is no error, must position and sort every diagnostic, and a plan it returns must be
// usable: job ids fit the hub, every wave's condition composes, and loading again gives the same hash.
// Inputs it found worth keeping are under testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"../plans/examples/*.yaml", "../testdata/plan/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil && len(data) < 64<<10 {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		p, ds := plan.Load("fuzz.yaml", data)
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("Load took %v", elapsed)
		}
		if (p != nil) == ds.HasErrors() {
			t.Fatalf("plan %v but HasErrors %v", p != nil, ds.HasErrors())
		}
		for i, d := range ds {
			if strings.HasPrefix(d.Message, "internal error") {
				t.Fatalf("panic or defect: %v", d)
			}
			if d.Line < 1 || d.Col < 1 || d.File != "fuzz.yaml" || d.Message == "" {
				t.Fatalf("diagnostic without a position or message: %#v", d)
			}
			if i > 0 && (ds[i-1].Line > d.Line || ds[i-1].Line == d.Line && ds[i-1].Col > d.Col) {
				t.Fatalf("diagnostics not sorted: %v before %v", ds[i-1], d)
			}
		}
		if p == nil {
			return
		}
		for i := range p.Waves {
			if id := plan.JobID(p, i, 999, 0); len(id) > 64 {
				t.Fatalf("job id %q longer than 64", id)
			}
			cond := query.Format(p.Condition(i))
			if _, err := query.ParseCondition(cond); err != nil && cond != "*" {
				t.Fatalf("wave %d condition %q does not parse back: %v", i, cond, err)
			}
		}
		again, _ := plan.Load("fuzz.yaml", data)
		if again == nil || again.Hash != p.Hash {
			t.Fatalf("loading again gave a different plan")
		}
	})
}
