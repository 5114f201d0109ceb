//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/iot-rollout/rollout/engine"
)

// interruptHolder sends SIGINT, the first Ctrl-C, to a lock holder on this host: it stops at its next
// safe point and saves its state.
func interruptHolder(h engine.Holder) error {
	if host, _ := os.Hostname(); h.Host != host {
		return fmt.Errorf("it runs on another host (this is %s)", host)
	}
	return syscall.Kill(h.PID, syscall.SIGINT)
}
