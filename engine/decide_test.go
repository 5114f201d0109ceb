package engine

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/plan"
)

func TestBatchRanges(t *testing.T) {
	tests := []struct {
		n    int
		b    plan.Batch
		want [][2]int
	}{
		{0, plan.Batch{Size: 10, Growth: 2}, nil},
		{5, plan.Batch{Size: 10, Growth: 2}, [][2]int{{0, 5}}},
		{10, plan.Batch{Size: 10, Growth: 2}, [][2]int{{0, 10}}},
		{35, plan.Batch{Size: 5, Growth: 2}, [][2]int{{0, 5}, {5, 15}, {15, 35}}},
		{36, plan.Batch{Size: 5, Growth: 2}, [][2]int{{0, 5}, {5, 15}, {15, 35}, {35, 36}}},
		{9, plan.Batch{Size: 3, Growth: 1}, [][2]int{{0, 3}, {3, 6}, {6, 9}}},
		{10, plan.Batch{Size: 2, Growth: 1.5}, [][2]int{{0, 2}, {2, 5}, {5, 9}, {9, 10}}},
		{3, plan.Batch{Size: 0, Growth: 0}, [][2]int{{0, 3}}},
	}
	for _, tt := range tests {
		got := BatchRanges(tt.n, tt.b)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("BatchRanges(%d, %+v) = %v, want %v", tt.n, tt.b, got, tt.want)
		}
	}
}

func TestInSample(t *testing.T) {
	const n = 20000
	for _, percent := range []float64{0, 1, 10, 50, 90, 100} {
		in := 0
		for i := range n {
			id := fmt.Sprintf("dev-%05d", i)
			got := InSample("fw", id, percent)
			if got != InSample("fw", id, percent) {
				t.Fatalf("InSample(%q) is not stable", id)
			}
			if got {
				in++
			}
		}
		share := float64(in) / n * 100
		if share < percent-1.5 || share > percent+1.5 {
			t.Errorf("percent %v sampled %.2f%%", percent, share)
		}
	}
	// A device in a 10% sample is in the 50% sample too: growing a wave never drops devices.
	for i := range 2000 {
		id := fmt.Sprintf("dev-%05d", i)
		if InSample("fw", id, 10) && !InSample("fw", id, 50) {
			t.Fatalf("%s in the 10%% sample but not the 50%% one", id)
		}
	}
	// Different rollouts sample differently.
	same := 0
	for i := range 2000 {
		id := fmt.Sprintf("dev-%05d", i)
		if InSample("a", id, 50) == InSample("b", id, 50) {
			same++
		}
	}
	if same > 1200 {
		t.Errorf("rollouts a and b agree on %d of 2000 devices; samples should be independent", same)
	}
}

func TestJudge(t *testing.T) {
	s := plan.Success{MinSuccessRate: 0.98, MaxFailures: 2, MinDevices: 10}
	tests := []struct {
		name   string
		c      Counts
		s      plan.Success
		pass   bool
		judged bool
		reason string
	}{
		{"all succeeded", Counts{Targeted: 100, Succeeded: 100}, s, true, true, ""},
		{"exactly at rate", Counts{Targeted: 100, Succeeded: 98, Unreachable: 2}, s, true, true, ""},
		{"below rate", Counts{Targeted: 100, Succeeded: 97, Unreachable: 3}, s, false, true, "below minSuccessRate 98%"},
		{"too many failures", Counts{Targeted: 1000, Succeeded: 997, Failed: 2, TimedOut: 1}, s, false, true, "3 devices failed or timed out"},
		{"failures at the limit", Counts{Targeted: 1000, Succeeded: 998, Failed: 1, TimedOut: 1}, s, true, true, ""},
		{"few devices: rate not judged", Counts{Targeted: 5, Succeeded: 3, Unreachable: 2}, s, true, false, "not judged"},
		{"few devices: failures still count", Counts{Targeted: 5, Succeeded: 2, Failed: 3}, s, false, true, "maxFailures"},
		{"unlimited failures", Counts{Targeted: 100, Succeeded: 99, Failed: 1}, plan.Success{MinSuccessRate: 0.9, MaxFailures: -1}, true, true, ""},
		{"method errors are failures", Counts{Targeted: 100, Succeeded: 97, Failed: 3, MethodError: 3}, s, false, true, "maxFailures"},
		{"nothing targeted", Counts{}, plan.Success{MinSuccessRate: 1, MaxFailures: 0}, true, false, ""},
		{"100% required", Counts{Targeted: 20, Succeeded: 19, Unreachable: 1}, plan.Success{MinSuccessRate: 1, MaxFailures: -1, MinDevices: 1}, false, true, "95%"},
		{"unreachable over a count", Counts{Targeted: 100, Succeeded: 96, Unreachable: 4},
			plan.Success{MinSuccessRate: 0.9, MaxFailures: -1, MaxUnreachable: &plan.Limit{Count: 3}}, false, true, "4 devices unreachable, more than maxUnreachable 3"},
		{"unreachable within a share", Counts{Targeted: 100, Succeeded: 95, Unreachable: 5},
			plan.Success{MinSuccessRate: 0.9, MaxFailures: -1, MaxUnreachable: &plan.Limit{Share: 0.05, Ratio: true}}, true, true, ""},
		{"unreachable over a share", Counts{Targeted: 100, Succeeded: 94, Unreachable: 6},
			plan.Success{MinSuccessRate: 0.9, MaxFailures: -1, MaxUnreachable: &plan.Limit{Share: 0.05, Ratio: true}}, false, true, "more than maxUnreachable 5%"},
		{"a share waits for minDevices", Counts{Targeted: 4, Succeeded: 3, Unreachable: 1},
			plan.Success{MinSuccessRate: 0.5, MaxFailures: -1, MinDevices: 10, MaxUnreachable: &plan.Limit{Share: 0.05, Ratio: true}}, true, false, "not judged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.c, tt.s)
			if v.Pass != tt.pass || v.Judged != tt.judged || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("Judge(%+v) = %+v, want pass=%v judged=%v reason containing %q", tt.c, v, tt.pass, tt.judged, tt.reason)
			}
		})
	}
}

func TestJudgeWave(t *testing.T) {
	wave := func(allowEmpty bool, s plan.Success) plan.Wave {
		return plan.Wave{Name: "canary", AllowEmpty: allowEmpty, Success: s}
	}
	s := plan.Success{MinSuccessRate: 1, MaxFailures: -1, MinDevices: 5}
	tests := []struct {
		name       string
		w          plan.Wave
		c          Counts
		pass, halt bool
		reason     string
	}{
		{"empty wave halts", wave(false, s), Counts{}, false, true, `selects no device (condition tags.ring = canary)`},
		{"empty wave allowed", wave(true, s), Counts{}, true, false, "allowEmpty"},
		{"fewer than minDevices, all succeeded", wave(false, s), Counts{Targeted: 3, Succeeded: 3}, true, false, ""},
		{"fewer than minDevices, one failed", wave(false, s), Counts{Targeted: 3, Succeeded: 2, Failed: 1}, false, false, "below minSuccessRate 100%"},
		{"fewer than minDevices, one unreachable", wave(false, s), Counts{Targeted: 2, Succeeded: 1, Unreachable: 1}, false, false, "50%"},
		{"small wave at its rate", wave(false, plan.Success{MinSuccessRate: 0.5, MaxFailures: -1, MinDevices: 10}),
			Counts{Targeted: 2, Succeeded: 1, Failed: 1}, true, false, ""},
		{"maxFailures", wave(false, plan.Success{MinSuccessRate: 0, MaxFailures: 0, MinDevices: 10}),
			Counts{Targeted: 4, Succeeded: 3, TimedOut: 1}, false, false, "1 device failed or timed out"},
		{"a small wave's unreachable share is judged", wave(false, plan.Success{MinSuccessRate: 0.5, MaxFailures: -1, MinDevices: 10,
			MaxUnreachable: &plan.Limit{Share: 0.05, Ratio: true}}), Counts{Targeted: 4, Succeeded: 3, Unreachable: 1}, false, false, "maxUnreachable 5%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := JudgeWave(tt.w, "tags.ring = canary", tt.c)
			if v.Pass != tt.pass || v.Halt != tt.halt || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("JudgeWave(%+v) = %+v, want pass=%v halt=%v reason containing %q", tt.c, v, tt.pass, tt.halt, tt.reason)
			}
		})
	}
}

func TestScheduleOpen(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	weekNights := plan.Window{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday},
		Start: 2 * time.Hour, End: 5 * time.Hour, Location: berlin}
	overnight := plan.Window{Days: []time.Weekday{time.Friday}, Start: 22 * time.Hour, End: 2 * time.Hour, Location: time.UTC}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		s    *plan.Schedule
		now  string
		open bool
		next string
	}{
		{"no schedule", nil, "2026-12-01T12:00:00Z", true, ""},
		{"inside window (03:00 Berlin on a Tuesday)", &plan.Schedule{Windows: []plan.Window{weekNights}}, "2026-12-01T02:00:00Z", true, ""},
		{"before window", &plan.Schedule{Windows: []plan.Window{weekNights}}, "2026-12-01T00:30:00Z", false, "2026-12-01T01:00:00Z"},
		{"end is exclusive", &plan.Schedule{Windows: []plan.Window{weekNights}}, "2026-12-01T04:00:00Z", false, "2026-12-02T01:00:00Z"},
		{"friday skips to monday", &plan.Schedule{Windows: []plan.Window{weekNights}}, "2026-12-04T02:00:00Z", false, "2026-12-07T01:00:00Z"},
		{"summer time shifts UTC opening", &plan.Schedule{Windows: []plan.Window{weekNights}}, "2026-06-30T23:00:00Z", false, "2026-07-01T00:00:00Z"},
		{"overnight window after midnight", &plan.Schedule{Windows: []plan.Window{overnight}}, "2026-12-05T01:00:00Z", true, ""},
		{"overnight window closed saturday night", &plan.Schedule{Windows: []plan.Window{overnight}}, "2026-12-05T23:00:00Z", false, "2026-12-11T22:00:00Z"},
		{"notBefore holds", &plan.Schedule{NotBefore: utc("2026-12-01T00:00:00Z")}, "2026-11-30T10:00:00Z", false, "2026-12-01T00:00:00Z"},
		{"notBefore then window", &plan.Schedule{NotBefore: utc("2026-12-01T02:30:00Z"), Windows: []plan.Window{weekNights}}, "2026-11-20T10:00:00Z", false, "2026-12-01T02:30:00Z"},
		{"notBefore after window closes", &plan.Schedule{NotBefore: utc("2026-12-01T05:00:00Z"), Windows: []plan.Window{weekNights}}, "2026-11-20T10:00:00Z", false, "2026-12-02T01:00:00Z"},
		{"notBefore passed", &plan.Schedule{NotBefore: utc("2026-12-01T00:00:00Z")}, "2026-12-01T00:00:00Z", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open, next := ScheduleOpen(tt.s, utc(tt.now))
			var want time.Time
			if tt.next != "" {
				want = utc(tt.next)
			}
			if open != tt.open || !next.Equal(want) {
				t.Errorf("ScheduleOpen at %s = %v, %v; want %v, %v", tt.now, open, next.UTC(), tt.open, want)
			}
		})
	}
}

func TestJudgeVerify(t *testing.T) {
	v := &plan.Verify{MinRate: 0.9, Within: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		v               *plan.Verify
		match, total, n int
		at              time.Duration
		want            VerifyState
	}{
		{"no verify", nil, 0, 10, 1, 0, VerifyPass},
		{"met", v, 9, 10, 1, 0, VerifyPass},
		{"not yet", v, 5, 10, 1, 10 * time.Second, VerifyWait},
		{"time up", v, 5, 10, 3, time.Minute, VerifyFail},
		{"time up but first read", v, 5, 10, 1, 2 * time.Minute, VerifyWait},
		{"met late", v, 10, 10, 5, 2 * time.Minute, VerifyPass},
		{"no devices", v, 0, 0, 1, 0, VerifyPass},
	}
	for _, tt := range tests {
		if got := JudgeVerify(tt.v, tt.match, tt.total, tt.n, t0, t0.Add(tt.at)); got != tt.want {
			t.Errorf("%s: JudgeVerify = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSplitIn(t *testing.T) {
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%06d", i)
	}
	ids[7] = `it's\odd`
	for _, max := range []int{100, 1000, 8192} {
		ranges := SplitIn(ids, max)
		next := 0
		for _, r := range ranges {
			if r[0] != next || r[1] <= r[0] {
				t.Fatalf("max %d: ranges %v not contiguous", max, ranges)
			}
			next = r[1]
			cond := InCondition(ids[r[0]:r[1]])
			if len(cond) > max {
				t.Fatalf("max %d: condition of %d chars", max, len(cond))
			}
			// Adding the next id would have passed max: ranges are as full as allowed.
			if r[1] < len(ids) && len(InCondition(ids[r[0]:r[1]+1])) <= max {
				t.Fatalf("max %d: range %v could hold one more id", max, r)
			}
		}
		if next != len(ids) {
			t.Fatalf("max %d: ranges end at %d", max, next)
		}
	}
	if got := InCondition([]string{"a", `it's`}); got != `deviceId IN ['a', 'it\'s']` {
		t.Errorf("InCondition = %s", got)
	}
}

func TestRollbackJobID(t *testing.T) {
	long := strings.Repeat("a", 40)
	if id := RollbackJobID(long, "0123456789abcdef", 99, 999, 9999); len(id) > 64 {
		t.Errorf("RollbackJobID is %d chars: %s", len(id), id)
	}
	if got := RollbackJobID("fw", "0123456789abcdef", 1, 2, 0); got != "fw-01234567-r01-b002" {
		t.Errorf("RollbackJobID = %s", got)
	}
	if got := RollbackJobID("fw", "0123456789abcdef", 1, 2, 3); got != "fw-01234567-r01-b002-p3" {
		t.Errorf("RollbackJobID = %s", got)
	}
}

func TestNext(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := &plan.Plan{Name: "fw", Waves: []plan.Wave{
		{Name: "canary"},
		{Name: "eu", Approval: true, Bake: time.Minute, Verify: &plan.Verify{MinRate: 1, Within: time.Hour}},
	}}
	none := func(string) bool { return false }
	all := func(string) bool { return true }
	withWaves := func(st Status, ws ...Wave) *State { return &State{Status: st, Waves: ws} }
	done := Wave{Status: StatusDone}
	tests := []struct {
		name     string
		st       *State
		approved func(string) bool
		sched    *plan.Schedule
		want     Step
	}{
		{"fresh", withWaves(StatusRunning, Wave{Status: StatusPending}, Wave{Status: StatusPending}), none, nil, Step{Kind: StepResolve}},
		{"batch", withWaves(StatusRunning, Wave{Status: StatusRunning, Resolved: true, Batches: []Batch{{Status: StatusDone}, {Status: StatusRunning}}}, Wave{}), none, nil, Step{Kind: StepBatch, Batch: 1}},
		{"wave gate", withWaves(StatusRunning, Wave{Status: StatusRunning, Resolved: true, Batches: []Batch{{Status: StatusDone}}}, Wave{}), none, nil, Step{Kind: StepWaveGate}},
		{"finish without bake", withWaves(StatusRunning, Wave{Status: StatusBaking, BakeStart: t0}, Wave{}), none, nil, Step{Kind: StepFinishWave}},
		{"approval", withWaves(StatusRunning, done, Wave{Status: StatusPending}), none, nil, Step{Kind: StepWaitApproval, Wave: 1}},
		{"approved", withWaves(StatusRunning, done, Wave{Status: StatusPending}), all, nil, Step{Kind: StepResolve, Wave: 1}},
		{"schedule", withWaves(StatusRunning, Wave{Status: StatusPending}, Wave{}), none, &plan.Schedule{NotBefore: t0.Add(time.Hour)}, Step{Kind: StepWaitSchedule, Until: t0.Add(time.Hour)}},
		{"schedule does not stop a running wave", withWaves(StatusRunning, Wave{Status: StatusRunning, Resolved: true, Batches: []Batch{{}}}, Wave{}), none, &plan.Schedule{NotBefore: t0.Add(time.Hour)}, Step{Kind: StepBatch}},
		{"verify", withWaves(StatusRunning, done, Wave{Status: StatusBaking, BakeStart: t0}), all, nil, Step{Kind: StepVerify, Wave: 1}},
		{"bake", withWaves(StatusRunning, done, Wave{Status: StatusBaking, BakeStart: t0, VerifyOK: true}), all, nil, Step{Kind: StepWaitBake, Wave: 1, Until: t0.Add(time.Minute)}},
		{"all done", withWaves(StatusRunning, done, done), all, nil, Step{Kind: StepDone}},
		{"halted", withWaves(StatusHalted, done, Wave{}), all, nil, Step{Kind: StepHalted}},
		{"rolling back", withWaves(StatusRollingBack, done, Wave{}), all, nil, Step{Kind: StepRollback}},
		{"rollback requested", &State{Status: StatusRunning, Requested: true, Waves: []Wave{done, {}}}, all, nil, Step{Kind: StepRollback}},
		{"rolled back", withWaves(StatusRolledBack, done, Wave{}), all, nil, Step{Kind: StepRolledBack}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := *p
			pp.Schedule = tt.sched
			if got := Next(&pp, tt.st, tt.approved, t0); got != tt.want {
				t.Errorf("Next = %+v, want %+v", got, tt.want)
			}
		})
	}
	// The bake waits only until it ends.
	st := withWaves(StatusRunning, done, Wave{Status: StatusBaking, BakeStart: t0, VerifyOK: true})
	if got := Next(p, st, all, t0.Add(time.Minute)); got.Kind != StepFinishWave {
		t.Errorf("after the bake: %+v", got)
	}
}

func TestJobsToStart(t *testing.T) {
	jobs := func(states ...string) []*Job {
		var out []*Job
		for i, s := range states {
			j := &Job{ID: fmt.Sprint(i)}
			switch s {
			case "running":
				j.Intent, j.Created = true, true
			case "ended":
				j.Intent, j.Created, j.Collected = true, true, true
			}
			out = append(out, j)
		}
		return out
	}
	ids := func(js []*Job) (out []string) {
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	tests := []struct {
		jobs  []*Job
		limit int
		want  []string
	}{
		{jobs("new", "new", "new"), 1, []string{"0"}},
		{jobs("new", "new", "new"), 10, []string{"0", "1", "2"}},
		{jobs("running", "new", "new"), 1, nil},
		{jobs("ended", "running", "new", "new"), 2, []string{"2"}},
		{jobs("ended", "ended"), 1, nil},
	}
	for _, tt := range tests {
		if got := ids(JobsToStart(tt.jobs, tt.limit)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("JobsToStart(limit %d) = %v, want %v", tt.limit, got, tt.want)
		}
	}
}

func TestStatsCounts(t *testing.T) {
	c, left := StatsCounts(&hubapi.DeviceJobStatistics{DeviceCount: 8, SucceededCount: 5, FailedCount: 1, RunningCount: 2}, 10)
	if c != (Counts{Targeted: 10, Succeeded: 5, Failed: 1}) || left != 4 {
		t.Errorf("StatsCounts = %+v, %d; want 5 succeeded, 1 failed, 4 left (2 running, 2 not taken)", c, left)
	}
	if c.Ended() != (Counts{Targeted: 10, Succeeded: 5, Failed: 1, TimedOut: 4}) {
		t.Errorf("Ended = %+v: devices never reached time out", c.Ended())
	}
	if c, left := StatsCounts(nil, 3); c.Targeted != 3 || left != 3 {
		t.Errorf("without statistics: %+v, %d", c, left)
	}
}

func TestPrepareAhead(t *testing.T) {
	p := &plan.Plan{Waves: []plan.Wave{
		{Name: "a", Action: plan.Action{TwinUpdate: &plan.TwinUpdate{}}},
		{Name: "b", Action: plan.Action{TwinUpdate: &plan.TwinUpdate{}}},
		{Name: "c", Approval: true},
	}}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	st := &State{Waves: []Wave{
		{Status: StatusRunning, Resolved: true, Batches: []Batch{{Snapshotted: true}, {}, {}}},
		{Status: StatusPending},
		{Status: StatusPending},
	}}
	if got := PrepareAhead(p, st, 0, 0, now); got == nil || *got != (Prepare{Wave: 0, Batch: 1}) {
		t.Errorf("a later batch's snapshot comes first: %+v", got)
	}
	st.Waves[0].Batches[1].Snapshotted, st.Waves[0].Batches[2].Snapshotted = true, true
	if got := PrepareAhead(p, st, 0, 2, now); got == nil || *got != (Prepare{Wave: 1, Batch: -1}) {
		t.Errorf("then the next wave's devices: %+v", got)
	}
	st.Waves[1].Resolved, st.Waves[1].Batches = true, []Batch{{}}
	if got := PrepareAhead(p, st, 0, 2, now); got == nil || *got != (Prepare{Wave: 1, Batch: 0}) {
		t.Errorf("then its first batch's snapshot: %+v", got)
	}
	st.Waves[0].Status, st.Waves[1].Status = StatusDone, StatusRunning
	if got := PrepareAhead(p, st, 1, 0, now); got != nil {
		t.Errorf("a next wave behind an approval is not prepared: %+v", got)
	}
	p.Waves[0].Bake = time.Minute
	st.Waves[0].Status, st.Waves[1].Status, st.Waves[1].Resolved = StatusRunning, StatusPending, false
	if got := PrepareAhead(p, st, 0, 2, now); got != nil {
		t.Errorf("nothing is prepared past a wave that bakes: %+v", got)
	}
}

func TestJudgeVerifyHeld(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	v := &plan.Verify{MinRate: 1, Within: time.Minute, Hold: 5 * time.Minute}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type read struct {
		at    time.Duration
		match int
		want  VerifyState
	}
	tests := []struct {
		name  string
		reads []read
	}{
		{"reached and held", []read{{10 * time.Second, 10, VerifyWait}, {3 * time.Minute, 10, VerifyWait}, {5*time.Minute + 10*time.Second, 10, VerifyPass}}},
		{"a device reverts during the hold: the hold starts again",
			[]read{{10 * time.Second, 10, VerifyWait}, {30 * time.Second, 9, VerifyWait}, {40 * time.Second, 10, VerifyWait},
				{5 * time.Minute, 10, VerifyWait}, {5*time.Minute + 41*time.Second, 10, VerifyPass}}},
		{"a revert that leaves no time for a whole hold fails at within+hold",
			[]read{{10 * time.Second, 10, VerifyWait}, {2 * time.Minute, 9, VerifyWait}, {3 * time.Minute, 10, VerifyWait}, {6*time.Minute + time.Second, 10, VerifyFail}}},
		{"never reached", []read{{10 * time.Second, 5, VerifyWait}, {6*time.Minute + time.Second, 5, VerifyFail}}},
		{"reached only after within", []read{{30 * time.Second, 5, VerifyWait}, {2 * time.Minute, 10, VerifyWait}, {6*time.Minute + time.Second, 10, VerifyFail}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var since time.Time
			for i, r := range tt.reads {
				var got VerifyState
				got, since = JudgeVerifyHeld(v, r.match, 10, i+1, t0, since, at(r.at))
				if got != r.want {
					t.Fatalf("read %d at %s (%d/10): %v, want %v", i+1, r.at, r.match, got, r.want)
				}
			}
		})
	}
	if got, _ := JudgeVerifyHeld(&plan.Verify{MinRate: 1, Within: time.Minute}, 10, 10, 1, t0, time.Time{}, t0); got != VerifyPass {
		t.Error("without hold, reaching the rate passes at once")
	}
}

func TestJudgeBudget(t *testing.T) {
	b := &plan.Budget{MaxFailures: 5, MaxFailureRate: 0.02, RateSet: true, MinDevices: 100}
	tests := []struct {
		name   string
		b      *plan.Budget
		c      Counts
		pass   bool
		reason string
	}{
		{"no budget", nil, Counts{Targeted: 10, Failed: 10}, true, ""},
		{"within", b, Counts{Targeted: 500, Succeeded: 495, Failed: 3, TimedOut: 2}, true, ""},
		{"over the count", b, Counts{Targeted: 1000, Succeeded: 994, Failed: 4, TimedOut: 2}, false, "6 devices failed or timed out over the rollout, more than maxFailures 5"},
		{"over the rate", &plan.Budget{MaxFailures: -1, MaxFailureRate: 0.02, RateSet: true, MinDevices: 100},
			Counts{Targeted: 200, Succeeded: 195, Failed: 5}, false, "2.5% of the 200 devices targeted so far"},
		{"the rate waits for minDevices", &plan.Budget{MaxFailures: -1, MaxFailureRate: 0.02, RateSet: true, MinDevices: 100},
			Counts{Targeted: 50, Succeeded: 45, Failed: 5}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := JudgeBudget(tt.b, tt.c)
			if v.Pass != tt.pass || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("JudgeBudget = %+v, want pass=%v reason containing %q", v, tt.pass, tt.reason)
			}
		})
	}
}

func TestNextWithSignals(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := &plan.Plan{Name: "fw", Waves: []plan.Wave{
		{Name: "canary", Bake: time.Hour},
		{Name: "eu", Approval: true},
	}}
	none := func(string) bool { return false }
	only := func(w string) func(string) bool { return func(x string) bool { return x == w } }
	baking := &State{Status: StatusRunning, Waves: []Wave{{Status: StatusBaking, BakeStart: t0}, {Status: StatusPending}}}
	gated := &State{Status: StatusRunning, Waves: []Wave{{Status: StatusDone}, {Status: StatusPending}}}
	tests := []struct {
		name string
		st   *State
		sig  Signals
		want Step
	}{
		{"baking", baking, Signals{Approved: none}, Step{Kind: StepWaitBake, Until: t0.Add(time.Hour)}},
		{"paused while baking", baking, Signals{Approved: none, Paused: true}, Step{Kind: StepPaused}},
		{"a promoted bake ends", baking, Signals{Approved: none, Promoted: only("canary")}, Step{Kind: StepFinishWave}},
		{"a promotion of another wave changes nothing", baking, Signals{Approved: none, Promoted: only("eu")}, Step{Kind: StepWaitBake, Until: t0.Add(time.Hour)}},
		{"a gate waits", gated, Signals{Approved: none}, Step{Kind: StepWaitApproval, Wave: 1}},
		{"a promoted gate opens", gated, Signals{Approved: none, Promoted: only("eu")}, Step{Kind: StepResolve, Wave: 1}},
		{"paused at a gate", gated, Signals{Approved: none, Paused: true}, Step{Kind: StepPaused, Wave: 1}},
		{"a halt holds", &State{Status: StatusHalted, Waves: []Wave{{Status: StatusDone}, {Status: StatusFailed}}}, Signals{Approved: none}, Step{Kind: StepHalted}},
		{"an accepted halt continues", &State{Status: StatusHalted, Waves: []Wave{{Status: StatusDone}, {Status: StatusFailed}}}, Signals{Approved: none, Accepted: true}, Step{Kind: StepAccept, Wave: 1}},
		{"a pause never holds a rollback", &State{Status: StatusRollingBack, Waves: []Wave{{}, {}}}, Signals{Approved: none, Paused: true}, Step{Kind: StepRollback}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextWith(p, tt.st, tt.sig, t0.Add(time.Minute)); got != tt.want {
				t.Errorf("NextWith = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNextRetry(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rt := &plan.Retry{Attempts: 3, Backoff: 10 * time.Second, Within: time.Minute, On: []string{plan.RetryUnreachable}}
	ended := func(n int) []Retry {
		var out []Retry
		for i := range n {
			out = append(out, Retry{Attempt: i + 1, Ended: true})
		}
		return out
	}
	unreachable := Counts{Targeted: 10, Succeeded: 7, Unreachable: 3}
	tests := []struct {
		name  string
		rt    *plan.Retry
		b     Batch
		now   time.Duration // since the wave started, at t0
		at    time.Duration
		ok    bool
		wantT bool // at is compared
	}{
		{"no retry", nil, Batch{Counts: unreachable}, 0, 0, false, false},
		{"the first retry backs off from the batch's end", rt, Batch{Counts: unreachable, Tried: t0.Add(5 * time.Second)}, 6 * time.Second, 15 * time.Second, true, true},
		{"the backoff doubles", rt, Batch{Counts: unreachable, Tried: t0.Add(20 * time.Second), Retries: ended(1)}, 21 * time.Second, 40 * time.Second, true, true},
		{"and doubles again", rt, Batch{Counts: unreachable, Tried: t0.Add(5 * time.Second), Retries: ended(2)}, 6 * time.Second, 45 * time.Second, true, true},
		{"attempts spent", rt, Batch{Counts: unreachable, Tried: t0, Retries: ended(3)}, 0, 0, false, false},
		{"nothing to retry", rt, Batch{Counts: Counts{Targeted: 10, Succeeded: 9, Failed: 1}, Tried: t0}, 0, 0, false, false},
		{"timed out devices wait for a retry that names them", rt, Batch{Counts: Counts{Targeted: 10, Succeeded: 9, TimedOut: 1}, Tried: t0}, 0, 0, false, false},
		{"named, they are retried", &plan.Retry{Attempts: 1, Backoff: time.Second, Within: time.Minute, On: []string{plan.RetryTimedOut}},
			Batch{Counts: Counts{Targeted: 10, Succeeded: 9, TimedOut: 1}, Tried: t0}, 0, time.Second, true, true},
		{"no retry starts after within", rt, Batch{Counts: unreachable, Tried: t0.Add(55 * time.Second)}, 56 * time.Second, 0, false, false},
		{"a running attempt is followed now", rt, Batch{Counts: unreachable, Tried: t0, Retries: []Retry{{Attempt: 1}}}, 30 * time.Second, 30 * time.Second, true, true},
		{"the backoff is capped by within", &plan.Retry{Attempts: 5, Backoff: 40 * time.Second, Within: time.Minute, On: []string{plan.RetryUnreachable}},
			Batch{Counts: unreachable, Tried: t0, Retries: ended(1)}, 0, time.Minute, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, ok := NextRetry(tt.rt, t0, &tt.b, t0.Add(tt.now))
			if ok != tt.ok || tt.wantT && !at.Equal(t0.Add(tt.at)) {
				t.Errorf("NextRetry = %s, %v; want %s, %v", at.Sub(t0), ok, tt.at, tt.ok)
			}
		})
	}
}

func TestNextRetrySteps(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p := &plan.Plan{Name: "fw", Waves: []plan.Wave{{Name: "all",
		Retry: &plan.Retry{Attempts: 2, Backoff: time.Minute, Within: time.Hour, On: []string{plan.RetryUnreachable}}}}}
	retrying := func(retries ...Retry) *State {
		return &State{Status: StatusRunning, Waves: []Wave{{Status: StatusRunning, Resolved: true, Started: t0, Batches: []Batch{
			{Status: StatusDone}, {Status: StatusRetrying, Tried: t0, Counts: Counts{Targeted: 5, Succeeded: 4, Unreachable: 1}, Retries: retries}}}}}
	}
	tests := []struct {
		name string
		st   *State
		at   time.Duration
		want Step
	}{
		{"waits for the backoff", retrying(), 10 * time.Second, Step{Kind: StepWaitRetry, Batch: 1, Until: t0.Add(time.Minute)}},
		{"starts when due", retrying(), time.Minute, Step{Kind: StepRetry, Batch: 1}},
		{"follows a running attempt", retrying(Retry{Attempt: 1}), 0, Step{Kind: StepRetry, Batch: 1}},
		{"judges the batch when none is left", retrying(Retry{Attempt: 1, Ended: true}, Retry{Attempt: 2, Ended: true}), 0, Step{Kind: StepRetry, Batch: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextWith(p, tt.st, Signals{Approved: func(string) bool { return false }}, t0.Add(tt.at)); got != tt.want {
				t.Errorf("NextWith = %+v, want %+v", got, tt.want)
			}
		})
	}
	paused := NextWith(p, retrying(), Signals{Approved: func(string) bool { return false }, Paused: true}, t0)
	if paused.Kind != StepPaused {
		t.Errorf("a pause holds a retrying batch: %+v", paused)
	}
}

func TestRetryJobID(t *testing.T) {
	p := &plan.Plan{Name: strings.Repeat("a", 40), Hash: "0123456789abcdef"}
	if id := RetryJobID(p, 99, 999, 9, 99); len(id) > 64 {
		t.Errorf("RetryJobID is %d chars: %s", len(id), id)
	}
	p.Name = "fw"
	if got := RetryJobID(p, 1, 2, 1, 0); got != "fw-01234567-w01-b002-r1" {
		t.Errorf("RetryJobID = %s", got)
	}
	if got := RetryJobID(p, 1, 2, 3, 4); got != "fw-01234567-w01-b002-r3p4" {
		t.Errorf("RetryJobID = %s", got)
	}
}

func TestVerifyReachable(t *testing.T) {
	share := &plan.Limit{Share: 0.2, Ratio: true}
	tests := []struct {
		name                 string
		limit                *plan.Limit
		matching, total, unr int
		m, t                 int
		exceeded             bool
	}{
		{"no limit: disconnected devices lower the rate", nil, 8, 10, 2, 8, 10, false},
		{"within the limit: judged apart", share, 8, 10, 2, 8, 8, false},
		{"over the limit", share, 7, 10, 3, 7, 10, true},
		{"none disconnected", share, 7, 10, 0, 7, 10, false},
		{"a count", &plan.Limit{Count: 1}, 8, 10, 2, 8, 10, true},
	}
	for _, tt := range tests {
		m, total, exceeded := VerifyReachable(tt.limit, tt.matching, tt.total, tt.unr)
		if m != tt.m || total != tt.t || exceeded != tt.exceeded {
			t.Errorf("%s: VerifyReachable = %d of %d, exceeded %v; want %d of %d, %v", tt.name, m, total, exceeded, tt.m, tt.t, tt.exceeded)
		}
	}
}
