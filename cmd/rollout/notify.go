package main

import (
	"fmt"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/notify"
)

// notifyGrace is how long a run waits at its end for the webhook to take what is queued.
const notifyGrace = 20 * time.Second

// notifier is the observer a run reports to: the view, and with --notify the webhook too. The
// returned function delivers what is queued; delivery failures are logged on standard error and
// never change the run's outcome.
func (f *runFlags) notifier(e *env, v engine.Observer) (engine.Observer, func()) {
	if f.notify == "" {
		return v, func() {}
	}
	n, err := notify.New(f.notify, notify.Options{Log: e.stderr})
	if err != nil {
		// check validated the URL already; a notifier that cannot start only loses notifications.
		fmt.Fprintln(e.stderr, "rollout: --notify:", err)
		return v, func() {}
	}
	both := engine.ObserverFunc(func(ev engine.Event) {
		v.Event(ev)
		n.Event(ev)
	})
	return both, func() { n.Close(notifyGrace) }
}
