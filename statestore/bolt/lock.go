package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/iot-rollout/rollout/statestore"
)

// errHeld is returned by the platform lock when another process holds the file.
var errHeld = errors.New("lock held")

// Lock takes the rollout's exclusive lock: the file NAME.lock under the state directory, locked with
// flock(2) and holding the holder's pid, host and start time. The kernel releases a flock when its
// process dies, so a SIGKILLed apply never leaves a stale lock. When another process holds it, Lock
// returns a *statestore.LockedError naming that holder.
func (r *Rollout) Lock(_ context.Context, h statestore.Holder) (statestore.Lease, error) {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(r.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", r.lockPath(), err)
	}
	if err := flock(f); err != nil {
		var held statestore.Holder
		if data, rerr := io.ReadAll(f); rerr == nil {
			_ = json.Unmarshal(data, &held)
		}
		f.Close()
		if errors.Is(err, errHeld) {
			return nil, &statestore.LockedError{Name: r.name, Holder: held}
		}
		return nil, fmt.Errorf("lock %s: %w", r.lockPath(), err)
	}
	h.Since = h.Since.UTC()
	data, _ := json.Marshal(h)
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(data, 0)
		_ = f.Sync()
	}
	return fileLease{f}, nil
}

// fileLease is a held flock. It is never lost while its process lives.
type fileLease struct{ f *os.File }

func (fileLease) Lost() <-chan struct{}         { return nil }
func (fileLease) Confirm(context.Context) error { return nil }

func (l fileLease) Release(context.Context) error {
	_ = l.f.Truncate(0)
	funlock(l.f)
	return l.f.Close()
}

// Holder reports who holds the rollout's lock, read from the lock file without taking the lock (so
// status never gets in an apply's way). A holder on this host is checked to be alive: a SIGKILLed
// apply leaves its record behind, but the kernel has released its lock. A holder on another host
// sharing the state directory is reported as the file names it.
func (r *Rollout) Holder(context.Context) (h statestore.Holder, held bool, err error) {
	data, err := os.ReadFile(r.lockPath())
	if errors.Is(err, os.ErrNotExist) || err == nil && len(data) == 0 {
		return statestore.Holder{}, false, nil
	}
	if err != nil {
		return statestore.Holder{}, false, err
	}
	if err := json.Unmarshal(data, &h); err != nil || h.PID == 0 {
		return statestore.Holder{}, false, nil
	}
	if host, _ := os.Hostname(); h.Host == host && !alive(h.PID) {
		return h, false, nil
	}
	return h, true, nil
}
