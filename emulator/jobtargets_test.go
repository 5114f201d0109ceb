package emulator

import (
	"reflect"
	"testing"

	"github.com/iot-rollout/rollout/query"
)

// TestJobTargetsByID checks that a job over deviceId IN [...] selects what evaluating the condition
// would, found by id: unknown and deleted ids are skipped, a repeated id counts once, the property
// name is case-insensitive, and any other condition is still evaluated.
func TestJobTargetsByID(t *testing.T) {
	s := newStore(1, Behavior{})
	f, err := ParseFleet("fleet.yaml", []byte("groups:\n  - {name: a, count: 5, idPrefix: dev-, tags: {ring: a}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.load(f, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.remove("dev-0003", ""); err != nil {
		t.Fatal(err)
	}
	ids := func(cond string) []string {
		t.Helper()
		devs, err := s.jobTargets(cond)
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		var out []string
		for _, d := range devs {
			out = append(out, d.id)
		}
		return out
	}
	for cond, want := range map[string][]string{
		"deviceId IN ['dev-0004', 'dev-0001', 'nope', 'dev-0003', 'dev-0001']": {"dev-0004", "dev-0001"},
		"DEVICEID IN ['dev-0002']":                          {"dev-0002"},
		"deviceId NIN ['dev-0000', 'dev-0001', 'dev-0002']": {"dev-0004"},
		"deviceId IN ['dev-0000'] AND tags.ring = 'b'":      nil,
		"*": {"dev-0000", "dev-0001", "dev-0002", "dev-0004"},
	} {
		if got := ids(cond); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", cond, got, want)
		}
	}
	if _, err := s.jobTargets("deviceId IN ["); err == nil {
		t.Error("a condition that does not parse must fail")
	}
}

// TestQueryByID checks that a query whose condition names its devices by id answers what evaluating
// it over every twin would, in the list's order.
func TestQueryByID(t *testing.T) {
	s := newStore(1, Behavior{})
	f, err := ParseFleet("fleet.yaml", []byte(`groups:
  - {name: a, count: 3, idPrefix: a-, tags: {ring: a}}
  - {name: b, count: 3, idPrefix: b-, tags: {ring: b}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.load(f, 1); err != nil {
		t.Fatal(err)
	}
	rows := func(q string) []string {
		t.Helper()
		parsed, err := query.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.queryRows(parsed)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range raw {
			out = append(out, string(r))
		}
		return out
	}
	for q, want := range map[string][]string{
		"SELECT deviceId FROM devices WHERE deviceId IN ['b-0001', 'a-0002', 'zz']":                               {`{"deviceId":"b-0001"}`, `{"deviceId":"a-0002"}`},
		"SELECT deviceId FROM devices WHERE tags.ring = 'a' AND deviceId IN ['b-0001', 'a-0002', 'a-0000']":       {`{"deviceId":"a-0002"}`, `{"deviceId":"a-0000"}`},
		"SELECT COUNT() AS n FROM devices WHERE (tags.ring = 'b') AND deviceId IN ['b-0001', 'b-0002', 'a-0001']": {`{"n":2}`},
		"SELECT deviceId FROM devices WHERE deviceId IN ['a-0000'] OR tags.ring = 'b'": {`{"deviceId":"a-0000"}`,
			`{"deviceId":"b-0000"}`, `{"deviceId":"b-0001"}`, `{"deviceId":"b-0002"}`},
	} {
		if got := rows(q); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", q, got, want)
		}
	}
}
