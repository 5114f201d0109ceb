package emulator

import (
	"container/heap"
	"sync"
	"time"
)

// converger makes simulated devices report their desired values back after their behaviour's delay. It
// keeps one min-heap of due times and one goroutine, not a goroutine or timer per device.
type converger struct {
	st   *store
	mu   sync.Mutex
	h    convHeap
	wake chan struct{}
}

type convItem struct {
	due int64 // unix nanoseconds
	dev *device
	ver int64 // desired version the report answers; stale items are skipped
}

type convHeap []convItem

func (h convHeap) Len() int           { return len(h) }
func (h convHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h convHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *convHeap) Push(x any)        { *h = append(*h, x.(convItem)) }
func (h *convHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newConverger(st *store) *converger {
	return &converger{st: st, wake: make(chan struct{}, 1)}
}

// schedule is called with the store's lock held after d's desired properties changed. Offline devices,
// those in their group's converge-failure share and external devices (their client reports) never
// report.
func (c *converger) schedule(d *device) {
	if d.flags&(flagOffline|flagConvergeFailure|flagExternal) != 0 || d.disabled || len(d.desired) == 0 {
		return
	}
	due := time.Now().Add(d.beh.ConvergeDelay).UnixNano()
	c.mu.Lock()
	heap.Push(&c.h, convItem{due: due, dev: d, ver: d.desiredVer})
	first := c.h[0].dev == d && c.h[0].due == due
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// run reports due devices until done is closed.
func (c *converger) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var memo reportMemo
	for {
		now := time.Now().UnixNano()
		var due []convItem
		c.mu.Lock()
		for len(c.h) > 0 && c.h[0].due <= now && len(due) < 10000 {
			due = append(due, heap.Pop(&c.h).(convItem))
		}
		next := time.Hour
		if len(c.h) > 0 {
			next = time.Duration(c.h[0].due - now)
		}
		c.mu.Unlock()
		if len(due) > 0 {
			c.st.reportDue(due, &memo, now)
			continue
		}
		timer.Reset(max(next, 0))
		select {
		case <-done:
			return
		case <-c.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// restore makes d report its desired properties back at due (unix nanoseconds), as a report scheduled
// before the data file was written would have; a due time already past is delivered at once. It answers
// d's current desired version, the one the data file saved beside the due time.
func (c *converger) restore(d *device, due int64) {
	c.mu.Lock()
	heap.Push(&c.h, convItem{due: due, dev: d, ver: d.desiredVer})
	c.mu.Unlock()
}

// live is the due time of each device's report that is still to come, keyed by device. A device whose
// desired properties changed again has stale items too; only the one answering its newest desired version
// counts, so the caller compares ver with the device's desiredVer under the store's lock.
func (c *converger) live() map[*device]convItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.h) == 0 {
		return nil
	}
	out := make(map[*device]convItem, len(c.h))
	for _, it := range c.h {
		if prev, ok := out[it.dev]; !ok || it.ver > prev.ver || it.ver == prev.ver && it.due < prev.due {
			out[it.dev] = it
		}
	}
	return out
}

// pending is the number of reports still due.
func (c *converger) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.h)
}
