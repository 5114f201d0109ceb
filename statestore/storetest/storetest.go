// Package storetest is the contract every state backend keeps, as one test suite: each backend's
// tests call Run with a function that gives a fresh, empty Backend (and, for a shared backend, a
// second view of the same place, as another machine would have it).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/statestore"
)

// Env is a backend under test.
type Env struct {
	// Backend is a fresh, empty place for rollout states.
	Backend statestore.Backend
	// Other opens the same place as another process or machine would, sharing nothing in memory
	// with Backend.
	Other func() statestore.Backend
}

// Features say what a backend can do beyond the common contract.
type Features struct {
	// Breakable: the lock can be broken by another holder (statestore.Breaker); the suite then
	// checks that a broken holder can write nothing more. A directory's lock is freed by the kernel
	// when its holder dies instead.
	Breakable bool
}

// Run runs the contract suite; newEnv gives a fresh Env for each test.
func Run(t *testing.T, f Features, newEnv func(t *testing.T) Env) {
	tests := []struct {
		name string
		fn   func(*testing.T, Env)
	}{
		{"RoundTrip", testRoundTrip},
		{"AllOrNothing", testAllOrNothing},
		{"ReadByAnother", testReadByAnother},
		{"FirstCaptureWinsUnderARacingWriter", testFirstCaptureWins},
		{"LockIsExclusive", testLockIsExclusive},
		{"SiblingsWithoutTheLock", testSiblingsWithoutTheLock},
		{"Names", testNames},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t)) })
	}
	if f.Breakable {
		t.Run("LockLostRefusesWrites", func(t *testing.T) { testLockLostRefusesWrites(t, newEnv(t)) })
	}
}

var ctx = context.Background()

func open(t *testing.T, b statestore.Backend, name string) statestore.Records {
	t.Helper()
	r, err := b.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func put(pairs ...string) func(statestore.Tx) error {
	return func(tx statestore.Tx) error {
		for i := 0; i < len(pairs); i += 3 {
			if err := tx.Put(pairs[i], pairs[i+1], []byte(pairs[i+2])); err != nil {
				return err
			}
		}
		return nil
	}
}

func get(t *testing.T, r statestore.Records, bucket, key string) string {
	t.Helper()
	var got []byte
	if err := r.View(ctx, func(tx statestore.Tx) error {
		var err error
		got, err = tx.Get(bucket, key)
		return err
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	return string(got)
}

func testRoundTrip(t *testing.T, e Env) {
	r := open(t, e.Backend, "fw")
	if ok, err := r.Exists(ctx); err != nil || ok {
		t.Fatalf("Exists before any write = %v, %v", ok, err)
	}
	if err := r.View(ctx, func(statestore.Tx) error { return nil }); !errors.Is(err, statestore.ErrNoState) {
		t.Fatalf("View before any write = %v, want ErrNoState", err)
	}
	if err := r.Update(ctx, put("state", "state", `{"v":1}`, "lists", "devices/000000", `["a","b"]`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, put("state", "state", `{"v":2}`, "snapshots", "a", `{"p":1}`)); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Exists(ctx); err != nil || !ok {
		t.Fatalf("Exists after a write = %v, %v", ok, err)
	}
	for _, c := range [][3]string{{"state", "state", `{"v":2}`}, {"lists", "devices/000000", `["a","b"]`}, {"snapshots", "a", `{"p":1}`}, {"snapshots", "b", ""}} {
		if got := get(t, r, c[0], c[1]); got != c[2] {
			t.Errorf("%s/%s = %q, want %q", c[0], c[1], got, c[2])
		}
	}
	if err := r.View(ctx, put("state", "state", `{}`)); err == nil {
		t.Error("a Put inside View succeeded")
	}
	dump, err := open(t, e.Other(), "fw").Dump(ctx)
	if err != nil || string(dump["state"]["state"]) != `{"v":2}` || string(dump["lists"]["devices/000000"]) != `["a","b"]` || string(dump["snapshots"]["a"]) != `{"p":1}` {
		t.Errorf("Dump = %q, %v", dump, err)
	}
}

func testAllOrNothing(t *testing.T, e Env) {
	r := open(t, e.Backend, "fw")
	if err := r.Update(ctx, put("state", "state", `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := r.Update(ctx, func(tx statestore.Tx) error {
		if err := put("state", "state", `{"v":2}`, "outcomes", "a", `{"o":1}`)(tx); err != nil {
			return err
		}
		return boom // a crash between the bulk and the root, as the caller sees it
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want the callback's error", err)
	}
	other := open(t, e.Other(), "fw")
	for _, r := range []statestore.Records{r, other} {
		if got := get(t, r, "state", "state"); got != `{"v":1}` {
			t.Errorf("root after a failed Update = %s", got)
		}
		if got := get(t, r, "outcomes", "a"); got != "" {
			t.Errorf("bulk of a failed Update is visible: %s", got)
		}
	}
}

func testReadByAnother(t *testing.T, e Env) {
	r := open(t, e.Backend, "fw")
	for i := range 5 {
		if err := r.Update(ctx, put("state", "state", fmt.Sprintf(`{"v":%d}`, i), "jobs", fmt.Sprintf("%06d", i), `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	other := open(t, e.Other(), "fw")
	if got := get(t, other, "state", "state"); got != `{"v":4}` {
		t.Errorf("another reader sees root %s", got)
	}
	for i := range 5 {
		if got := get(t, other, "jobs", fmt.Sprintf("%06d", i)); got != "{}" {
			t.Errorf("another reader misses jobs/%06d", i)
		}
	}
	// It sees later writes too.
	if err := r.Update(ctx, put("state", "state", `{"v":5}`, "jobs", "000005", `{}`)); err != nil {
		t.Fatal(err)
	}
	if get(t, other, "state", "state") != `{"v":5}` || get(t, other, "jobs", "000005") != "{}" {
		t.Error("another reader did not see a later write")
	}
}

// putIfAbsent is how the engine captures a prior value: the first capture is kept.
func putIfAbsent(bucket, key, v string, observed *string) func(statestore.Tx) error {
	return func(tx statestore.Tx) error {
		old, err := tx.Get(bucket, key)
		if err != nil || old != nil {
			*observed = string(old)
			return err
		}
		*observed = ""
		return tx.Put(bucket, key, []byte(v))
	}
}

func testFirstCaptureWins(t *testing.T, e Env) {
	a := open(t, e.Backend, "fw")
	if err := a.Update(ctx, put("state", "state", `{}`)); err != nil {
		t.Fatal(err)
	}
	b := open(t, e.Other(), "fw")
	get(t, b, "state", "state") // b has read the state before a captures
	var seen string
	if err := a.Update(ctx, putIfAbsent("snapshots", "d1", `"first"`, &seen)); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, putIfAbsent("snapshots", "d1", `"second"`, &seen)); err != nil {
		t.Fatal(err)
	}
	if seen != `"first"` {
		t.Errorf("the racing writer saw %q, want the first capture", seen)
	}
	if got := get(t, open(t, e.Other(), "fw"), "snapshots", "d1"); got != `"first"` {
		t.Errorf("stored capture %s, want the first", got)
	}
	// Concurrent writers each commit once, none lost.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := open(t, e.Other(), "fw")
			errs[i] = r.Update(ctx, put("snapshots", fmt.Sprintf("c%d", i), `true`))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent writer %d: %v", i, err)
		}
		if get(t, a, "snapshots", fmt.Sprintf("c%d", i)) != "true" {
			t.Errorf("concurrent writer %d's record was lost", i)
		}
	}
}

func testLockIsExclusive(t *testing.T, e Env) {
	a := open(t, e.Backend, "fw")
	since := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	la, err := a.Lock(ctx, statestore.Holder{PID: 4242, Host: "runner-a", Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, put("state", "state", `{"held":true}`)); err != nil {
		t.Fatalf("the holder's Update: %v", err)
	}
	b := open(t, e.Other(), "fw")
	_, err = b.Lock(ctx, statestore.Holder{PID: 7, Host: "runner-b", Since: since})
	var le *statestore.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Lock = %v, want *LockedError", err)
	}
	if le.Holder.PID != 4242 || le.Holder.Host != "runner-a" || !le.Holder.Since.Equal(since) {
		t.Errorf("LockedError names %+v", le.Holder)
	}
	if h, held, err := b.Holder(ctx); err != nil || !held || h.PID != 4242 {
		t.Errorf("Holder = %+v, %v, %v", h, held, err)
	}
	if err := la.Confirm(ctx); err != nil {
		t.Errorf("Confirm while held: %v", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, held, err := b.Holder(ctx); err != nil || held {
		t.Errorf("Holder after Release: held %v, %v", held, err)
	}
	lb, err := b.Lock(ctx, statestore.Holder{PID: 7, Host: "runner-b", Since: since})
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	defer lb.Release(ctx)
	if err := b.Update(ctx, put("state", "state", `{"b":true}`)); err != nil {
		t.Fatalf("the new holder's Update: %v", err)
	}
	if got := get(t, a, "state", "state"); got != `{"b":true}` {
		t.Errorf("the old holder reads %s", got)
	}
}

func testSiblingsWithoutTheLock(t *testing.T, e Env) {
	a := open(t, e.Backend, "fw")
	if err := a.Update(ctx, put("state", "state", `{}`)); err != nil {
		t.Fatal(err)
	}
	l, err := a.Lock(ctx, statestore.Holder{PID: 1, Host: "a", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	b := open(t, e.Other(), "fw")
	if err := b.PutSibling(ctx, "approvals", "canary", []byte(`{"by":"ana"}`), true); err != nil {
		t.Fatalf("approve while locked: %v", err)
	}
	if err := b.PutSibling(ctx, "approvals", "canary", []byte(`{"by":"bo"}`), true); !errors.Is(err, statestore.ErrExists) {
		t.Errorf("second create = %v, want ErrExists", err)
	}
	if err := b.PutSibling(ctx, "controls", "promote/eu west", []byte(`{"by":"cy"}`), false); err != nil {
		t.Fatal(err)
	}
	got, err := a.Siblings(ctx, "approvals")
	if err != nil || len(got) != 1 || string(got["canary"]) != `{"by":"ana"}` {
		t.Errorf("the holder reads approvals %v, %v", got, err)
	}
	controls, err := a.Siblings(ctx, "controls")
	if err != nil || string(controls["promote/eu west"]) != `{"by":"cy"}` {
		t.Errorf("controls %v, %v", controls, err)
	}
	if err := b.DeleteSibling(ctx, "controls", "promote/eu west"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSibling(ctx, "controls", "never"); err != nil {
		t.Errorf("deleting a missing sibling: %v", err)
	}
	if controls, _ := a.Siblings(ctx, "controls"); len(controls) != 0 {
		t.Errorf("controls after delete: %v", controls)
	}
}

// testLockLostRefusesWrites breaks a holder's lock, for backends whose lock can be broken: the
// holder learns it at its next check and can write nothing more.
func testLockLostRefusesWrites(t *testing.T, e Env) {
	a := open(t, e.Backend, "fw")
	other := open(t, e.Other(), "fw")
	br, ok := other.(statestore.Breaker)
	if !ok {
		t.Fatal("the backend's lock is said to be breakable, but its records are no statestore.Breaker")
	}
	if err := a.Update(ctx, put("state", "state", `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	l, err := a.Lock(ctx, statestore.Holder{PID: 1, Host: "a", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := br.LeaseState(ctx); err != nil || s != "leased" {
		t.Errorf("LeaseState = %q, %v", s, err)
	}
	if err := br.Break(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Confirm(ctx); !errors.Is(err, statestore.ErrLockLost) {
		t.Errorf("Confirm after a break = %v, want ErrLockLost", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Error("Lost is not closed after a break")
	}
	if err := a.Update(ctx, put("state", "state", `{"v":2}`, "jobs", "000000", `{"intent":true}`)); !errors.Is(err, statestore.ErrLockLost) {
		t.Errorf("the old holder's intent write = %v, want ErrLockLost", err)
	}
	if got := get(t, other, "state", "state"); got != `{"v":1}` {
		t.Errorf("root after the refused write = %s", got)
	}
	if got := get(t, other, "jobs", "000000"); got != "" {
		t.Errorf("the refused write's bulk is visible: %s", got)
	}
	_ = l.Release(ctx)
	lb, err := other.Lock(ctx, statestore.Holder{PID: 2, Host: "b", Since: time.Now()})
	if err != nil {
		t.Fatalf("Lock after a break: %v", err)
	}
	_ = lb.Release(ctx)
}

func testNames(t *testing.T, e Env) {
	for _, n := range []string{"b", "a"} {
		if err := open(t, e.Backend, n).Update(ctx, put("state", "state", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	names, err := e.Other().Names(ctx)
	if err != nil || fmt.Sprint(names) != "[a b]" {
		t.Errorf("Names = %v, %v", names, err)
	}
	if _, err := e.Backend.Open(ctx, "../x"); err == nil {
		t.Error("Open accepted a path as a name")
	}
}
