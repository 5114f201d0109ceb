package query

import "testing"

func TestDefinite(t *testing.T) {
	docs := map[string]Map{
		"canary":   {"deviceId": "c1", "tags": map[string]any{"ring": "canary", "region": "eu"}},
		"eu":       {"deviceId": "e1", "tags": map[string]any{"region": "eu"}},
		"bare":     {"deviceId": "b1"},
		"us-ring":  {"deviceId": "u1", "tags": map[string]any{"ring": "early", "region": "us"}},
		"wrongtyp": {"deviceId": "w1", "tags": map[string]any{"ring": 5.0}},
	}
	tests := []struct {
		cond       string
		selects    []string // what the condition (and Definite of it) selects
		complement []string // what NOT Definite selects: everything else, but for type mismatches
	}{
		{"tags.ring = 'canary'", []string{"canary"}, []string{"eu", "bare", "us-ring"}},
		{"tags.ring = 'canary' OR tags.region = 'eu'", []string{"canary", "eu"}, []string{"bare", "us-ring"}},
		// wrongtyp lacks tags.region, so it definitely fails the AND whatever its ring.
		{"tags.ring = 'canary' AND tags.region = 'eu'", []string{"canary"}, []string{"eu", "bare", "us-ring", "wrongtyp"}},
		{"NOT (tags.ring = 'canary')", []string{"us-ring"}, []string{"canary", "eu", "bare"}},
		{"NOT (tags.ring = 'canary' AND tags.region = 'eu')", []string{"us-ring"}, []string{"canary", "eu", "bare"}},
		{"tags.region IN ['eu', 'us'] AND NOT IS_DEFINED(tags.ring)", []string{"eu"}, []string{"canary", "bare", "us-ring", "wrongtyp"}},
		{"STARTSWITH(tags.ring, 'can')", []string{"canary"}, []string{"eu", "bare", "us-ring"}},
		{"IS_DEFINED(tags.ring)", []string{"canary", "us-ring", "wrongtyp"}, []string{"eu", "bare"}},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			e, err := ParseCondition(tt.cond)
			if err != nil {
				t.Fatal(err)
			}
			orig, def, excl := Compile(e), Compile(Definite(e)), Compile(Not(Definite(e)))
			// The rewritten condition must print to something that parses back to itself.
			if _, err := ParseCondition(Format(Not(Definite(e)))); err != nil {
				t.Fatalf("Format(Not(Definite)) = %q does not parse: %v", Format(Not(Definite(e))), err)
			}
			want, wantExcl := map[string]bool{}, map[string]bool{}
			for _, n := range tt.selects {
				want[n] = true
			}
			for _, n := range tt.complement {
				wantExcl[n] = true
			}
			for name, doc := range docs {
				if got := orig.Match(doc); got != want[name] {
					t.Errorf("%s: condition matches = %v, fixture says %v", name, got, want[name])
				}
				if got := def.Match(doc); got != want[name] {
					t.Errorf("%s: Definite matches = %v, want %v", name, got, want[name])
				}
				if got := excl.Match(doc); got != wantExcl[name] {
					t.Errorf("%s: NOT Definite matches = %v, want %v (%s)", name, got, wantExcl[name], Format(Not(Definite(e))))
				}
			}
		})
	}
}
