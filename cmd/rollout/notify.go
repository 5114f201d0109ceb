package main

import "github.com/iot-rollout/rollout/engine"

// notifier is the observer a run reports to: the view.
func (f *runFlags) notifier(e *env, v engine.Observer) (engine.Observer, func()) {
	return v, func() {}
}
