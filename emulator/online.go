package emulator

import (
	"slices"
	"time"
)

// This file brings devices online on a schedule (behavior onlineAfter): the devices that start
// offline come online that long after the emulator starts or loads its data file. Which devices are
// offline is the seeded draw the fleet always makes, so which come online, and when, is the same on
// every run.

// onlineDelays lists the distinct positive onlineAfter delays of the offline simulated devices and
// modules, shortest first.
func (s *store) onlineDelays() []time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []time.Duration
	add := func(d *device) {
		if d.flags&(flagOffline|flagExternal) == flagOffline && d.beh.OnlineAfter > 0 && !slices.Contains(out, d.beh.OnlineAfter) {
			out = append(out, d.beh.OnlineAfter)
		}
	}
	for _, d := range s.order {
		add(d)
	}
	for _, m := range s.modOrder {
		add(m)
	}
	slices.Sort(out)
	return out
}

// bringOnline brings online at now the offline simulated devices and modules whose onlineAfter is
// after: Connected from then on, answering methods, and reporting back the desired properties they
// missed while away.
func (s *store) bringOnline(after time.Duration, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := func(d *device) {
		if d.deleted || d.flags&(flagOffline|flagExternal) != flagOffline || d.beh.OnlineAfter != after {
			return
		}
		s.lag.record(d)
		d.flags &^= flagOffline
		d.connAt, d.lastActivity = now, now
		if s.onDesired != nil {
			s.onDesired(d)
		}
	}
	for _, d := range s.order {
		up(d)
	}
	for _, m := range s.modOrder {
		up(m)
	}
}

// scheduleOnline brings each onlineAfter group of offline devices online at its delay from now,
// unless the emulator closes first.
func (s *Server) scheduleOnline() {
	for _, after := range s.store.onlineDelays() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if sleep(after, s.done, nil) == elapsed {
				s.store.bringOnline(after, time.Now().UnixNano())
			}
		}()
	}
}
