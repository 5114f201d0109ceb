package emulator

import (
	"testing"

	"github.com/iot-rollout/rollout/query"
)

// TestQueryNoAllocPerTwin checks that evaluating common conditions against a twin allocates nothing:
// a million-twin COUNT must not create a million garbage objects.
func TestQueryNoAllocPerTwin(t *testing.T) {
	f, err := ParseFleet("f.yaml", []byte("groups:\n  - {name: g, count: 10, tags: {region: eu, model: x}, reported: {firmware: {version: '2.3.0'}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(1, DefaultBehavior)
	if err := st.load(f, 1); err != nil {
		t.Fatal(err)
	}
	d := st.order[3]
	for _, cond := range []string{
		"tags.region = 'eu'",
		"tags.region = 'eu' AND tags.model != 'y'",
		"properties.reported.firmware.version = '2.3.0'",
		"deviceId IN ['g-0001', 'g-0003']",
		"status = 'enabled' AND connectionState = 'Connected'",
		"IS_DEFINED(tags.region)",
	} {
		e, err := query.ParseCondition(cond)
		if err != nil {
			t.Fatal(err)
		}
		m := query.Compile(e)
		if !m.Match((*twinDoc)(d)) {
			t.Errorf("%s does not match %s", cond, d.id)
		}
		if n := testing.AllocsPerRun(100, func() { m.Match((*twinDoc)(d)) }); n != 0 {
			t.Errorf("%s: %v allocations per twin", cond, n)
		}
	}
}

// TestJobRowNoAlloc checks the same for devices.jobs rows.
func TestJobRowNoAlloc(t *testing.T) {
	j := &job{id: "j1", idAny: "j1", typAny: "scheduleUpdateTwin"}
	d := &device{id: "d1", idAny: "d1"}
	r := &deviceJobRow{job: j, dev: d, status: rowFailed}
	q, err := query.Parse("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.status = 'failed' AND devices.jobs.deviceId IN ['d1']")
	if err != nil {
		t.Fatal(err)
	}
	m := q.Matcher()
	if !m.Match((*rowDoc)(r)) {
		t.Fatal("row does not match")
	}
	if n := testing.AllocsPerRun(100, func() { m.Match((*rowDoc)(r)) }); n != 0 {
		t.Errorf("%v allocations per row", n)
	}
}
