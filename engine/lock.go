package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// errHeld is returned by the platform lock when another process holds the file.
var errHeld = errors.New("lock held")

// Lock takes the rollout's exclusive lock: the file NAME.lock under the state directory, locked with
// flock(2) and holding the holder's pid, host and start time. The kernel releases a flock when its
// process dies, so a SIGKILLed apply never leaves a stale lock. When another process holds it, Lock
// returns a *LockedError naming that holder. The returned function releases the lock.
func (s *Store) Lock(now time.Time) (unlock func(), err error) {
	path := filepath.Join(s.dir, s.name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		var h Holder
		if data, rerr := io.ReadAll(f); rerr == nil {
			_ = json.Unmarshal(data, &h)
		}
		f.Close()
		if errors.Is(err, errHeld) {
			return nil, &LockedError{Name: s.name, Holder: h}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	host, _ := os.Hostname()
	data, _ := json.Marshal(Holder{PID: os.Getpid(), Host: host, Since: now.UTC()})
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(data, 0)
		_ = f.Sync()
	}
	return func() {
		_ = f.Truncate(0)
		funlock(f)
		f.Close()
	}, nil
}

// Holder reports who holds the rollout's lock, read from the lock file without taking the lock (so
// status never gets in an apply's way). A holder on this host is checked to be alive: a SIGKILLed
// apply leaves its record behind, but the kernel has released its lock. A holder on another host
// sharing the state directory is reported as the file names it.
func (s *Store) Holder() (h Holder, held bool, err error) {
	data, err := os.ReadFile(filepath.Join(s.dir, s.name+".lock"))
	if errors.Is(err, os.ErrNotExist) || err == nil && len(data) == 0 {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, err
	}
	if err := json.Unmarshal(data, &h); err != nil || h.PID == 0 {
		return Holder{}, false, nil
	}
	if host, _ := os.Hostname(); h.Host == host && !alive(h.PID) {
		return h, false, nil
	}
	return h, true, nil
}
