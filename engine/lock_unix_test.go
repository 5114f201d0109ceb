//go:build unix

package engine

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestLockReleasedOnKill checks that a killed holder leaves no stale lock.
func TestLockReleasedOnKill(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	s, _ := OpenStore(dir, "fw")
	cmd := exec.Command("flock", "-x", dir+"/fw.lock", "sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		unlock, err := s.Lock(time.Now())
		if err != nil {
			break
		}
		unlock()
		if time.Now().After(deadline) {
			t.Fatal("the flock(1) holder never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	// The kernel releases the lock once the killed processes are gone.
	for deadline := time.Now().Add(5 * time.Second); ; {
		unlock, err := s.Lock(time.Now())
		if err == nil {
			unlock()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock after the holder was killed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
