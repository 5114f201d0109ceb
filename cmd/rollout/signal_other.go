//go:build !unix

package main

import (
	"errors"

	"github.com/iot-rollout/rollout/engine"
)

// interruptHolder cannot signal another process on this platform.
func interruptHolder(engine.Holder) error {
	return errors.New("signalling another process is not supported on this platform")
}
