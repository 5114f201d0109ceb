package engine

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/iot-rollout/rollout/plan"
)

// TestCaptureAndRestore checks that the patch restorePatch builds from capturePrior, merged over the
// patched twin the way IoT Hub merges a twin patch, gives back the original twin exactly.
func TestCaptureAndRestore(t *testing.T) {
	obj := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name           string
		patch, desired string // the update's desired patch and the device's prior desired section
	}{
		{"absent property", `{"fw":{"v":"2"}}`, `{}`},
		{"nested merge", `{"fw":{"v":"2"}}`, `{"fw":{"v":"1","uri":"old"}}`},
		{"nested absent leaf", `{"fw":{"v":"2","uri":"new"}}`, `{"fw":{"v":"1"}}`},
		{"scalar replaced by object", `{"fw":{"v":"2"}}`, `{"fw":7}`},
		{"object replaced by scalar", `{"fw":"2"}`, `{"fw":{"v":"1","list":[1,2]}}`},
		{"array replaced", `{"fw":"2","x":1}`, `{"fw":[1,{"a":null}]}`},
		{"untouched siblings", `{"a":{"b":{"c":1}}}`, `{"a":{"b":{"d":2},"e":3},"z":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tu := &plan.TwinUpdate{Desired: obj(tt.patch), Tags: obj(`{"channel":"stable"}`)}
			prior := obj(tt.desired)
			tags := obj(`{"ring":"eu"}`)
			p := capturePrior(tags, prior, tu)
			// Round trip through the stored form.
			data, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var stored Prior
			if err := json.Unmarshal(data, &stored); err != nil {
				t.Fatal(err)
			}
			twinDesired, twinTags := merge(prior, tu.Desired), merge(tags, tu.Tags)
			rp := restorePatch(stored)
			var restoreDesired map[string]any
			if rp.Properties != nil {
				restoreDesired = normalize(t, rp.Properties.Desired)
			}
			gotDesired := merge(twinDesired, restoreDesired)
			gotTags := merge(twinTags, normalize(t, rp.Tags))
			if !reflect.DeepEqual(gotDesired, prior) || !reflect.DeepEqual(gotTags, tags) {
				t.Errorf("restored desired %v tags %v; want %v, %v (prior %s)", gotDesired, gotTags, prior, tags, data)
			}
		})
	}
}

// normalize turns a patch with raw JSON values into plain decoded JSON.
func normalize(t *testing.T, m map[string]any) map[string]any {
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// merge applies a twin patch the way IoT Hub does: objects merge key by key, null removes a key,
// anything else replaces.
func merge(doc, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range doc {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			cur, _ := out[k].(map[string]any)
			out[k] = merge(cur, pv)
		default:
			out[k] = v
		}
	}
	return out
}

func TestChangedSince(t *testing.T) {
	patch := &plan.TwinUpdate{Tags: map[string]any{"fwChannel": "stable"},
		Desired: map[string]any{"firmware": map[string]any{"version": "2.0", "uri": nil}, "n": 2}}
	prior := Prior{"tags.fwChannel": {Absent: true}, "properties.desired.firmware.version": {Value: json.RawMessage(`"1.0"`)},
		"properties.desired.firmware.uri": {Value: json.RawMessage(`"old"`)}, "properties.desired.n": {Value: json.RawMessage(`1`)}}
	asWritten := func() (map[string]any, map[string]any) {
		return map[string]any{"fwChannel": "stable", "ring": "eu"},
			map[string]any{"firmware": map[string]any{"version": "2.0"}, "n": json.Number("2.0")}
	}
	tests := []struct {
		name   string
		change func(tags, desired map[string]any)
		want   []string
	}{
		{"as the rollout wrote it", func(tags, desired map[string]any) {}, nil},
		{"an unrelated property changed", func(tags, desired map[string]any) { tags["ring"] = "us"; desired["other"] = 1 }, nil},
		{"a written value changed", func(tags, desired map[string]any) {
			desired["firmware"].(map[string]any)["version"] = "2.1"
		}, []string{"properties.desired.firmware.version"}},
		{"a removed property is back", func(tags, desired map[string]any) {
			desired["firmware"].(map[string]any)["uri"] = "new"
		}, []string{"properties.desired.firmware.uri"}},
		{"a written tag removed", func(tags, desired map[string]any) { delete(tags, "fwChannel") }, []string{"tags.fwChannel"}},
		{"the parent replaced", func(tags, desired map[string]any) { desired["firmware"] = "flat" },
			[]string{"properties.desired.firmware.version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tags, desired := asWritten()
			tt.change(tags, desired)
			if got := ChangedSince(prior, patch, tags, desired); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ChangedSince = %v, want %v", got, tt.want)
			}
		})
	}
}
