package emulator

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/iot-rollout/rollout/hubapi"
)

// store is the device registry and twin store. Its methods take mu themselves; the lower-case helpers
// that say "callers hold mu" serve those methods only.
type store struct {
	mu        sync.RWMutex
	byID      map[string]*device
	order     []*device // creation order; deleted devices are dropped by compact
	ndeleted  int
	mods      map[string]*device // module identities by key ({deviceId}/{moduleId})
	modOrder  []*device          // modules in creation order
	configs   map[string]*configuration
	seed      int64
	defaults  *Behavior
	keySalt   []byte
	lag       *lagLog         // nil without query lag
	onDesired func(d *device) // schedules convergence; called with mu held
	// pushDesired sends a desired patch (without $version) at version ver to an external device's
	// client, if one listens; called with mu held, so it must only queue the message.
	pushDesired func(id string, patch map[string]any, ver int64)
	// revoke closes a device's live connection because its identity was deleted or disabled; called
	// with mu held, so it must not wait for the connection to end.
	revoke func(id, reason string)
}

func newStore(seed int64, defaults Behavior) *store {
	salt := make([]byte, 8)
	binary.BigEndian.PutUint64(salt, uint64(seed))
	return &store{byID: map[string]*device{}, mods: map[string]*device{}, seed: seed, defaults: &defaults, keySalt: salt}
}

// load adds a fleet's devices. Generated groups get exact shares: round(share × count) devices, those
// with the smallest hashes.
func (s *store) load(f *Fleet, now int64) error {
	if f == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	total := len(f.Devices)
	for _, g := range f.Groups {
		total += g.Count
	}
	if s.byID == nil || len(s.byID) == 0 {
		s.byID = make(map[string]*device, total)
		s.order = make([]*device, 0, total)
	}
	for gi := range f.Groups {
		if err := s.loadGroup(&f.Groups[gi], now); err != nil {
			return err
		}
	}
	for i := range f.Configurations {
		if err := s.loadConfig(&f.Configurations[i], now+int64(i)); err != nil {
			return err
		}
	}
	for i := range f.Devices {
		spec := &f.Devices[i]
		beh := spec.Behavior
		d := &device{id: spec.DeviceID, beh: &beh, disabled: spec.Status == "disabled",
			statusReason: spec.StatusReason, modelID: spec.ModelID, iotEdge: spec.IoTEdge,
			tags: spec.Tags, desired: spec.Desired, reported: spec.Reported}
		s.initDevice(d, now)
		d.flags = flagsFor(s.seed, d.id, &beh)
		if beh.External {
			d.flags |= flagExternal
		}
		if spec.ConnectionState == "Disconnected" {
			d.flags |= flagOffline
		}
		if err := s.insert(d); err != nil {
			return err
		}
		for j := range spec.Modules {
			if err := s.insertModule(s.moduleOf(d, &spec.Modules[j], now)); err != nil {
				return err
			}
		}
	}
	return nil
}

// moduleOf builds the module a fleet file's device lists; callers hold mu.
func (s *store) moduleOf(d *device, spec *ModuleSpec, now int64) *device {
	m := s.newModule(d, spec.ModuleID, now)
	m.mod.managedBy, m.modelID = spec.ManagedBy, spec.ModelID
	m.tags, m.desired, m.reported = spec.Tags, spec.Desired, spec.Reported
	return m
}

// loadGroup adds a generated group's devices, which share its maps and behaviour; callers hold mu.
func (s *store) loadGroup(g *Group, now int64) error {
	beh := g.Behavior
	devs := make([]device, g.Count) // one allocation per group
	width := groupIDWidth(g.Count)
	buf := make([]byte, 0, len(g.IDPrefix)+width)
	for i := range devs {
		buf = append(buf[:0], g.IDPrefix...)
		n := strconv.Itoa(i)
		for j := len(n); j < width; j++ {
			buf = append(buf, '0')
		}
		buf = append(buf, n...)
		d := &devs[i]
		d.id = string(buf)
		d.beh = &beh
		d.group = g.Name
		d.tags, d.desired, d.reported = g.Tags, g.Desired, g.Reported
		s.initDevice(d, now)
	}
	for _, a := range aspectShares(&beh) {
		markShare(devs, s.seed, a)
	}
	if beh.External {
		for i := range devs {
			devs[i].flags |= flagExternal
		}
	}
	for i := range devs {
		if err := s.insert(&devs[i]); err != nil {
			return err
		}
	}
	return nil
}

// markShare sets a's flag on exactly round(share × count) devices of a group: those with the smallest
// hashes for a's aspect.
func markShare(devs []device, seed int64, a aspectShare) {
	k := int(math.Round(a.share * float64(len(devs))))
	if k <= 0 {
		return
	}
	if k >= len(devs) {
		for i := range devs {
			devs[i].flags |= a.flag
		}
		return
	}
	hs := make([]uint64, len(devs))
	for i := range devs {
		hs[i] = hashID(seed, a.aspect, devs[i].id)
	}
	sorted := slices.Clone(hs)
	slices.Sort(sorted)
	limit := sorted[k-1]
	for i := range devs {
		if hs[i] <= limit {
			devs[i].flags |= a.flag
		}
	}
}

func (s *store) initDevice(d *device, now int64) {
	d.idAny = d.id
	d.version, d.desiredVer, d.reportedVer, d.deviceETag = 1, 1, 1, 1
	d.created, d.desiredAt, d.reportedAt, d.statusAt = now, now, now, now
}

// add inserts a device read back from the data file.
func (s *store) add(d *device) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insert(d)
}

// insert adds d; callers hold mu.
func (s *store) insert(d *device) error {
	if _, dup := s.byID[d.id]; dup {
		return fmt.Errorf("device %q is defined more than once", d.id)
	}
	s.byID[d.id] = d
	s.order = append(s.order, d)
	return nil
}

// get returns the live device; callers hold mu.
func (s *store) get(id string) (*device, error) {
	d, ok := s.byID[id]
	if !ok {
		return nil, hubErr(hubapi.CodeDeviceNotFound, "Device %s not registered", id)
	}
	return d, nil
}

// snapshot returns a copy of the state of the device or module key names (see device.key), safe to
// read without the lock.
func (s *store) snapshot(key string) (device, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.identity(key)
	if err != nil {
		return device{}, err
	}
	return *d, nil
}

// lookup returns the live device or module key names, for a caller that passes it back to the store
// (a method call on it): its fields are read under the store's lock only.
func (s *store) lookup(key string) (*device, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.identity(key)
}

// forEach calls f with each registered device in creation order, under the read lock, until f fails.
func (s *store) forEach(f func(d *device) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.order {
		if d.deleted {
			continue
		}
		if err := f(d); err != nil {
			return err
		}
	}
	return nil
}

// forEachModule calls f with each module in creation order, under the read lock, until f fails.
func (s *store) forEachModule(f func(m *device) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.modOrder {
		if err := f(m); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes a device identity and its twin, and its modules.
func (s *store) remove(id string, ifMatch string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.get(id)
	if err != nil {
		return err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(d.deviceETag) {
		return hubErr(hubapi.CodePreconditionFailed, "ETag mismatch for device ID '%s'", id)
	}
	s.lag.record(d)
	d.deleted = true
	s.revokeIdentity(d, "the device was deleted")
	for _, m := range s.modulesOf(id) {
		s.dropModule(m, "the device was deleted")
	}
	delete(s.byID, id)
	s.ndeleted++
	if s.ndeleted > len(s.order)/4 {
		s.compact()
	}
	return nil
}

func (s *store) compact() {
	out := s.order[:0]
	for _, d := range s.order {
		if !d.deleted {
			out = append(out, d)
		}
	}
	clear(s.order[len(out):])
	s.order = out
	s.ndeleted = 0
}
