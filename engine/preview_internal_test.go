package engine

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

func TestInChunks(t *testing.T) {
	for _, tc := range []struct {
		n, idLen, room int
	}{
		{0, 10, 500}, {1, 10, 500}, {1000, 12, 600}, {5000, 40, 8000}, {3, 700, 500},
	} {
		t.Run(fmt.Sprintf("%d ids of %d in %d", tc.n, tc.idLen, tc.room), func(t *testing.T) {
			var ids []string
			for i := range tc.n {
				id := fmt.Sprintf("%0*d", tc.idLen, i)
				ids = append(ids, strings.Replace(id, "0", "'", 1)) // a quote to escape
			}
			var got []string
			for _, c := range inChunks(ids, tc.room) {
				text := query.Format(c)
				back, err := query.ParseCondition(text)
				if err != nil {
					t.Fatalf("chunk does not parse: %v", err)
				}
				in := back.(query.InList)
				if len(in.Values) > 1 && len(text) > tc.room {
					t.Errorf("chunk of %d ids is %d characters, room %d", len(in.Values), len(text), tc.room)
				}
				for _, v := range in.Values {
					got = append(got, v.(query.String).Value)
				}
			}
			if len(got) != len(ids) || (len(ids) > 0 && !reflect.DeepEqual(got, ids)) {
				t.Errorf("chunks hold %d ids in another order or set than the %d given", len(got), len(ids))
			}
		})
	}
}

func TestPatchPathsAndValues(t *testing.T) {
	tu := &plan.TwinUpdate{
		Tags:    map[string]any{"fwChannel": "stable", "odd-name": map[string]any{"x": 1}},
		Desired: map[string]any{"firmware": map[string]any{"version": "2.4.0", "uri": nil}, "empty": map[string]any{}},
	}
	want := []string{"properties.desired.empty", "properties.desired.firmware.uri", "properties.desired.firmware.version",
		"tags.[[odd-name]].x", "tags.fwChannel"}
	paths := map[string]query.Path{}
	var got []string
	for _, p := range patchPaths(tu) {
		got = append(got, p.String())
		paths[p.String()] = p
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("patchPaths = %q, want %q", got, want)
	}
	for path, v := range map[string]string{
		"tags.fwChannel": `"stable"`, "tags.[[odd-name]].x": "1", "properties.desired.firmware.uri": "null",
		"properties.desired.empty": "{}",
	} {
		if got := patchValue(tu, paths[path]); got != v {
			t.Errorf("patchValue(%s) = %s, want %s", path, got, v)
		}
		if _, err := query.Parse("SELECT " + path + " AS v, COUNT() AS n FROM devices GROUP BY " + path); err != nil {
			t.Errorf("path %s does not make a query: %v", path, err)
		}
	}
}

func TestMakeDiff(t *testing.T) {
	d := makeDiff("tags.a", `"new"`, map[string]int{`"new"`: 4, `"old"`: 3, "": 7, `"zero"`: 0, `"neg"`: -1, `"b"`: 3})
	want := PathDiff{Path: "tags.a", To: `"new"`, NoOps: 4,
		From: []ValueCount{{Value: "", Devices: 7}, {Value: `"b"`, Devices: 3}, {Value: `"old"`, Devices: 3}}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("makeDiff = %+v, want %+v", d, want)
	}
	if canonicalRaw([]byte(`60`)) != canonical(60) || canonicalRaw([]byte(`{"b":1,"a":2}`)) != canonical(map[string]any{"a": 2, "b": 1}) {
		t.Error("canonical forms of equal values differ")
	}
}

func TestScale(t *testing.T) {
	for _, tc := range []struct{ n, devices, candidates, want int }{
		{10, 10, 10, 10}, {5, 20, 100, 1}, {50, 20, 100, 10}, {7, 0, 0, 0}, {3, 10, 0, 3},
	} {
		if got := scale(tc.n, tc.devices, tc.candidates); got != tc.want {
			t.Errorf("scale(%d, %d, %d) = %d, want %d", tc.n, tc.devices, tc.candidates, got, tc.want)
		}
	}
}
