package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/statestore/bolt"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir() + "/state"
	s := openStore(t, dir, "fw")
	if _, err := s.Load(); !errors.Is(err, ErrNoState) {
		t.Fatalf("Load before any write = %v, want ErrNoState", err)
	}
	st := &State{Name: "fw", PlanHash: "abc", Status: StatusRunning, Waves: []Wave{{Name: "canary", Status: StatusRunning,
		Batches: []Batch{{Start: 0, End: 2, Jobs: []Job{{ID: "fw-abc-w0-0-0", End: 2, Intent: true}}}}}}}
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutState(st); err != nil {
			return err
		}
		if err := tx.PutDevices(0, []string{"a", "b"}); err != nil {
			return err
		}
		if err := tx.putSnapshotJSON("a", mustJSON(t, Prior{"tags.ring": {Absent: true}, "properties.desired.fw": {Value: json.RawMessage(`{"v":"1"}`)}})); err != nil {
			return err
		}
		// A second capture never overwrites the first.
		return tx.putSnapshotJSON("a", mustJSON(t, Prior{"tags.ring": {Value: json.RawMessage(`"changed"`)}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Waves[0].Batches[0].Jobs[0].ID != "fw-abc-w0-0-0" || !got.Waves[0].Batches[0].Jobs[0].Intent {
		t.Errorf("state round trip lost the job: %+v", got)
	}
	err = s.View(func(tx *Tx) error {
		ids, err := tx.Devices(0)
		if err != nil || strings.Join(ids, ",") != "a,b" {
			t.Errorf("Devices = %v, %v", ids, err)
		}
		p, ok, err := tx.Snapshot("a")
		if err != nil || !ok || !p["tags.ring"].Absent || string(p["properties.desired.fw"].Value) != `{"v":"1"}` {
			t.Errorf("Snapshot = %+v, %v, %v", p, ok, err)
		}
		if _, ok, _ := tx.Snapshot("b"); ok {
			t.Error("snapshot of b exists")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(context.Background(), bolt.New(dir), "../x"); err == nil {
		t.Error("OpenStore accepted a path as name")
	}
}

// openStore opens rollout name's store in state directory dir.
func openStore(tb testing.TB, dir, name string) *Store {
	tb.Helper()
	s, err := OpenStore(context.Background(), bolt.New(dir), name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestSaveWritesChangedJobs checks that a save writes the job records that changed and no others,
// and that the rollout reads back whole, jobs in their batches.
func TestSaveWritesChangedJobs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, "fw")
	jobs := make([]Job, 50)
	for i := range jobs {
		jobs[i] = Job{ID: fmt.Sprintf("fw-abc-w00-b000-p%d", i), Start: i, End: i + 1}
	}
	st := &State{Name: "fw", Status: StatusRunning, Waves: []Wave{{Name: "a", Status: StatusRunning,
		Batches: []Batch{{Start: 0, End: 50, Status: StatusRunning, Jobs: jobs}}}}}
	save := func() int {
		t.Helper()
		written := 0
		if err := s.Update(func(tx *Tx) error {
			err := tx.PutState(st)
			written = len(tx.pending)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return written
	}
	if n := save(); n != 50 {
		t.Errorf("first save wrote %d job records, want 50", n)
	}
	st.Waves[0].Batches[0].Jobs[7].Intent = true
	if n := save(); n != 1 {
		t.Errorf("a save after one job changed wrote %d job records, want 1", n)
	}
	if n := save(); n != 0 {
		t.Errorf("a save with nothing changed wrote %d job records", n)
	}
	// A second Store (another run) knows nothing was written by it yet, and reads the jobs back.
	s2 := openStore(t, dir, "fw")
	got, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if b := got.Waves[0].Batches[0]; len(b.Jobs) != 50 || !b.Jobs[7].Intent || b.Jobs[8].Intent || b.JobCount != 0 {
		t.Fatalf("read back %d jobs (intent %v/%v, count %d)", len(b.Jobs), b.Jobs[7].Intent, b.Jobs[8].Intent, b.JobCount)
	}
}

// BenchmarkSaveAtJob measures one save after a job's intent, with 10 and with 1,000 jobs already in
// the rollout: a save writes what changed, so its cost must not grow with the jobs before it.
func BenchmarkSaveAtJob(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			s := openStore(b, b.TempDir(), "fw")
			jobs := make([]Job, n)
			for i := range jobs {
				jobs[i] = Job{ID: fmt.Sprintf("fw-0123abcd-w00-b000-p%d", i), Start: i * 500, End: (i + 1) * 500,
					Intent: true, Created: true, Collected: true, Counts: Counts{Targeted: 500, Succeeded: 500}}
			}
			st := &State{Name: "fw", Status: StatusRunning, Waves: []Wave{{Name: "a", Status: StatusRunning,
				Batches: []Batch{{Start: 0, End: n * 500, Status: StatusRunning, Jobs: jobs}}}}}
			if err := s.Update(func(tx *Tx) error { return tx.PutState(st) }); err != nil {
				b.Fatal(err)
			}
			last := &st.Waves[0].Batches[0].Jobs[n-1]
			b.ResetTimer()
			for i := range b.N {
				last.Status = fmt.Sprint(i) // one job changed, as an intent or a created job is
				if err := s.Update(func(tx *Tx) error { return tx.PutState(st) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
