package emulator

import (
	"sync"
	"time"
)

// lagLog remembers twins as they were before each change during the last lag, so that twin queries can
// see the fleet as it was lag ago (the hub's query results trail its twins by seconds to minutes).
type lagLog struct {
	lag     time.Duration
	mu      sync.Mutex // guards entries; writers also hold the store's lock
	entries []lagEntry
}

type lagEntry struct {
	at   int64
	dev  *device
	prev *device // the twin before the change; nil when the change created the device
}

// record remembers d's state before a change; a nil log records nothing, and neither does a module
// (module queries see module twins as they are).
func (l *lagLog) record(d *device) {
	if l == nil || d.mod != nil {
		return
	}
	prev := *d
	l.add(lagEntry{at: time.Now().UnixNano(), dev: d, prev: &prev})
}

// recordCreate remembers that d did not exist before now.
func (l *lagLog) recordCreate(d *device) {
	if l == nil {
		return
	}
	l.add(lagEntry{at: time.Now().UnixNano(), dev: d})
}

func (l *lagLog) add(e lagEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	if len(l.entries)%1024 == 0 {
		l.pruneLocked(e.at)
	}
}

func (l *lagLog) pruneLocked(now int64) {
	cut := now - int64(l.lag)
	i := 0
	for i < len(l.entries) && l.entries[i].at <= cut {
		i++
	}
	if i > 0 {
		n := copy(l.entries, l.entries[i:])
		clear(l.entries[n:])
		l.entries = l.entries[:n]
	}
}

// view returns, for every device changed during the last lag, its state as of lag ago (nil: it did not
// exist then). Devices absent from the map are seen as they are now.
func (l *lagLog) view(now int64) map[*device]*device {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	if len(l.entries) == 0 {
		return nil
	}
	v := make(map[*device]*device, len(l.entries))
	for _, e := range l.entries {
		if _, seen := v[e.dev]; !seen {
			v[e.dev] = e.prev
		}
	}
	return v
}
