//go:build !unix

package bolt

import "os"

// On platforms without flock(2) the lock is advisory only within one process; rollout's supported
// platforms for unattended runs (cron, systemd) are Unix.
func flock(f *os.File) error { return nil }

func funlock(f *os.File) {}

// alive cannot tell here; a recorded holder is taken as alive.
func alive(pid int) bool { return true }
