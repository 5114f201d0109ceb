//go:build unix

package bolt

import (
	"context"

	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/statestore"
)

// TestLockReleasedOnKill checks that a killed holder leaves no stale lock.
func TestLockReleasedOnKill(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	s, _ := New(dir).Rollout("fw")
	cmd := exec.Command("flock", "-x", dir+"/fw.lock", "sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := s.Lock(context.Background(), statestore.Holder{PID: 1})
		if err != nil {
			break
		}
		l.Release(context.Background())
		if time.Now().After(deadline) {
			t.Fatal("the flock(1) holder never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	// The kernel releases the lock once the killed processes are gone.
	for deadline := time.Now().Add(5 * time.Second); ; {
		l, err := s.Lock(context.Background(), statestore.Holder{PID: 1})
		if err == nil {
			l.Release(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock after the holder was killed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
