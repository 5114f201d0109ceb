package emulator

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzAppendString holds the hand-written JSON string encoder to encoding/json's output.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "<html>&", "\x00\x1f\t\n\r", "é✓😀", "\xff\xfe", "\u2028\u2029"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

// FuzzAppendFloat holds the float encoder to encoding/json's output.
func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, -1, 0.5, 1e-7, 1e21, 1e20, 123456789.125, -4503599627370496, 5e-324, math.MaxFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return
		}
		want, _ := json.Marshal(v)
		if got := appendFloat(nil, v); string(got) != string(want) {
			t.Errorf("appendFloat(%v) = %s, want %s", v, got, want)
		}
	})
}

// TestAppendTwinIsJSON checks that a rendered twin is valid JSON that reads back as written.
func TestAppendTwinIsJSON(t *testing.T) {
	d := &device{id: "d\"1", tags: map[string]any{"a": []any{1.0, "x", nil, map[string]any{"b": true}}, "<": "&"},
		desired: map[string]any{"fw": map[string]any{"v": "2.4.0", "n": 1.5e-9}}, version: 3, desiredVer: 2, reportedVer: 1,
		desiredMeta: []metaEntry{{"fw", 5, 2}}}
	b := appendTwin(nil, d)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if m["deviceId"] != "d\"1" || m["etag"] != "AAAAAAAAAAM=" || m["tags"].(map[string]any)["<"] != "&" {
		t.Errorf("twin %s", b)
	}
	fw := m["properties"].(map[string]any)["desired"].(map[string]any)["$metadata"].(map[string]any)["fw"].(map[string]any)
	if fw["$lastUpdatedVersion"] != 2.0 || fw["v"] == nil {
		t.Errorf("metadata %v", fw)
	}
}
