package query

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// record is an Object that is not a map, as the emulator might store a device-job row.
type record struct {
	status any // held as any so that Field does not box (and allocate) on every call
	code   int64
}

func (r record) Field(name string) (any, bool) {
	switch strings.ToLower(name) {
	case "status":
		return r.status, true
	case "code":
		return r.code, true
	case "nested":
		return Map{"x": int32(7)}, true
	}
	return nil, false
}

func TestMatchValues(t *testing.T) {
	doc := Map{
		"f64": 2.5, "int": 3, "i32": int32(3), "i64": int64(3), "f32": float32(0.5), "u": uint(3),
		"jn": json.Number("3"), "badjn": json.Number("x"), "s": "abc", "t": true, "n": nil,
		"arr": []any{1.0, "a"}, "obj": map[string]any{"K": "v", "k": "lower"},
		"rec": record{status: "completed", code: 200}, "Mixed": "exact",
	}
	tests := []struct {
		src  string
		want bool
	}{
		{"int = 3 AND i32 = 3 AND i64 = 3 AND u = 3 AND jn = 3", true},
		{"int = i64 AND jn = i32", true},
		{"f32 = 0.5 AND f64 > 2 AND f64 < 3", true},
		{"badjn = 3 OR NOT (badjn = 3)", false},
		{"s = 'abc' AND s >= 'ab' AND s < 'abd' AND s != 'ABC'", true},
		{"t = true AND t > false AND NOT (t = false)", true},
		{"n = null AND NOT (n != null) AND IS_DEFINED(n)", true},
		{"n < null OR n > null", false},
		{"arr = [1, 'a'] OR arr != [1, 'a'] OR arr = arr", false},
		{"obj = obj OR obj != 'x'", false},
		{"obj.K = 'v' AND obj.k = 'lower'", true}, // exact match wins
		{"obj.KK = 'v'", false},
		{"mixed = 'exact' AND MIXED = 'exact'", true},
		{"rec.STATUS = 'completed' AND rec.code = 200 AND rec.nested.x = 7", true},
		{"rec.missing = 1 OR NOT (rec.missing = 1)", false},
		{"s.length = 3", false}, // a string has no properties
		{"int + 1 = 4 AND int - 1 = 2 AND int * 2 = 6 AND int / 2 = 1.5 AND int % 2 = 1 AND -int = -3", true},
		{"int / 0 = 1 OR NOT (int / 0 = 1) OR int % 0 = 0", false},
		{"s + 1 = 1 OR -s = 1 OR NOT (-s = 1)", false},
		{"int IN [1, 2, 3] AND s IN ['abc'] AND t IN [true] AND n IN [null]", true},
		{"int NIN ['3'] AND s NIN [1, 'x']", true},
		{"missing NIN [1] OR obj IN [1] OR obj NIN [1]", false},
		{"STARTSWITH(s, 'ab') AND ENDSWITH(s, 'bc') AND NOT STARTSWITH(s, 'b')", true},
		{"STARTSWITH(int, '3') OR NOT STARTSWITH(int, '3')", false},
		{"IS_DEFINED(missing) OR IS_DEFINED(obj.missing)", false},
		{"s", false},
		{"t", true},
		{"t AND s", false},
		{"NOT (t AND s)", false},
		{"t OR s", true},
		{"false OR s", false},
		{"NOT (false OR s)", false},
		{"undefined = undefined OR NOT (undefined = undefined) OR 1 = undefined", false},
		{"3 = int AND 'abc' = s AND 2 < int", true},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			e := mustParse(t, tt.src)
			if got := Compile(e).Match(doc); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchEdges(t *testing.T) {
	if !Compile(nil).Match(nil) || !Compile(All{}).Match(Map{}) {
		t.Error("All must match every document")
	}
	var m *Matcher
	if m.Match(Map{}) {
		t.Error("a nil Matcher must match nothing")
	}
	if Compile(mustParse(t, "deviceId = 'x'")).Match(nil) {
		t.Error("a nil document has no properties")
	}
	if Compile(Call{Name: "NOPE"}).Match(Map{}) || Compile(Call{Name: "IS_DEFINED"}).Match(Map{}) {
		t.Error("an unknown or malformed call is undefined")
	}
	for _, e := range []Expr{Or(), Not(All{}), In("deviceId", nil)} {
		if Compile(e).Match(Map{"deviceId": "x"}) {
			t.Errorf("%s must match nothing", Format(e))
		}
	}
	// A devices.jobs matcher strips the prefix; a plain Compile does not.
	q, err := Parse("SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed'")
	if err != nil {
		t.Fatal(err)
	}
	rec := Map{"status": "completed"}
	if !q.Matcher().Match(rec) || Compile(q.Where()).Match(rec) {
		t.Error("devices.jobs paths must resolve against the record only through the query's Matcher")
	}
	if !q.Matcher().Match(record{status: "completed"}) {
		t.Error("a non-map Object record must match")
	}
}

// TestMatchNoAlloc checks the promise that simple conditions evaluate without allocating.
func TestMatchNoAlloc(t *testing.T) {
	twin := benchTwin(42)
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%06d", i*2)
	}
	for _, src := range []string{
		benchCondition,
		"tags.region = 'eu' OR NOT (tags.ring >= 2) OR deviceId != 'x'",
		"IS_DEFINED(tags.region) AND STARTSWITH(deviceId, 'device-') AND ENDSWITH(deviceId, '42')",
		"deviceId IN ['device-000042', 'device-000043'] AND tags.ring NIN [7, 8]",
		"Tags.Region = 'eu' AND properties.reported.missing = 1",
		"tags.ring + 1 > 1 AND -tags.ring < 0",
		Format(In("deviceId", ids)),
	} {
		m := Compile(mustParse(t, src))
		m.Match(twin)
		if n := testing.AllocsPerRun(100, func() { m.Match(twin) }); n != 0 {
			t.Errorf("%.60s: %v allocations per Match, want 0", src, n)
		}
	}
	m := Compile(mustParse(t, "status = 'completed' AND code = 200"))
	rec := Object(record{status: "completed", code: 200})
	if n := testing.AllocsPerRun(100, func() { m.Match(rec) }); n != 0 {
		t.Errorf("record Object: %v allocations per Match, want 0", n)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		src     string
		offsets []int
	}{
		{"deviceId = 'x'", nil},
		{`deviceId = "x" AND ENDSWITH(deviceId, 'y')`, []int{11, 19}},
		{`tags.x = "a`, nil},
		{"tags.region = eu AND tags.ring != Two AND eu = tags.region", []int{14, 34}},
		{"tags.a = tags.b AND version > properties.reported.v AND deviceId = DeviceId AND x = STARTSWITH(a, 'b')", nil},
	}
	for _, tt := range tests {
		var got []int
		for _, w := range Warnings(tt.src) {
			got = append(got, w.Offset)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.offsets) {
			t.Errorf("Warnings(%q) at %v, want %v", tt.src, got, tt.offsets)
		}
	}
}

// keyed is a KeyedObject whose only property is stored as "deviceId".
type keyed struct{}

func (keyed) Field(name string) (any, bool) {
	_, v, ok := keyed{}.FieldKey(name)
	return v, ok
}

func (keyed) FieldKey(name string) (string, any, bool) {
	if strings.EqualFold(name, "deviceId") {
		return "deviceId", "d1", true
	}
	return "", nil, false
}

func TestProjectKeys(t *testing.T) {
	q, err := Parse("SELECT DeviceId, Tags.Region, tags.missing FROM devices")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		doc  Object
		want string
	}{
		{Map{"deviceId": "d1", "tags": map[string]any{"region": "eu"}}, `{"deviceId":"d1","region":"eu"}`},
		{keyed{}, `{"deviceId":"d1"}`},
		{record{status: "x"}, `{}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(q.Project(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("Project(%#v) = %s, want %s", tt.doc, got, tt.want)
		}
	}
}
