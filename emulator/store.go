package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// Device flags, decided once per device from its behaviour, the seed and a hash of its id.
const (
	flagOffline uint8 = 1 << iota
	flagMethodFailure
	flagMethodTimeout
	flagConvergeFailure
)

// Hash aspects: each behaviour share draws from its own hash so the shares are independent.
const (
	aspectOffline byte = iota + 1
	aspectMethodFailure
	aspectMethodTimeout
	aspectConvergeFailure
)

// device is one device identity with its twin. It is kept compact because a fleet may hold a million: the
// tag, desired and reported maps are immutable once stored and shared between the devices of a generated
// group (a patch builds a new map), so a copy of the struct is a consistent snapshot of the twin.
type device struct {
	id    string
	idAny any // id boxed once, so that query evaluation does not allocate per twin
	beh   *Behavior
	group string // generated group name; "" for explicit or created devices

	flags        uint8
	disabled     bool
	deleted      bool
	iotEdge      bool
	statusReason string
	modelID      string
	primaryKey   string // "" means derived from the seed and id (see keys)
	secondaryKey string

	tags, desired, reported       map[string]any
	version, desiredVer           int64
	reportedVer, deviceETag       int64
	created, desiredAt            int64 // unix nanoseconds
	reportedAt, statusAt          int64
	lastActivity                  int64
	desiredMeta, reportedMeta     []metaEntry
	methodCalls, twinPatches      uint32
	reports, methodCallsDelivered uint32
}

func (d *device) offline() bool { return d.flags&flagOffline != 0 }

// connectionState is the twin's connectionState: simulated offline devices are disconnected.
func (d *device) connectionState() string {
	if d.offline() {
		return "Disconnected"
	}
	return "Connected"
}

func (d *device) status() string {
	if d.disabled {
		return "disabled"
	}
	return "enabled"
}

// store is the device registry and twin store.
type store struct {
	mu        sync.RWMutex
	byID      map[string]*device
	order     []*device // creation order; deleted devices are dropped by compact
	ndeleted  int
	seed      int64
	defaults  *Behavior
	keySalt   []byte
	lag       *lagLog         // nil without query lag
	onDesired func(d *device) // schedules convergence; called with mu held
}

func newStore(seed int64, defaults Behavior) *store {
	salt := make([]byte, 8)
	binary.BigEndian.PutUint64(salt, uint64(seed))
	return &store{byID: map[string]*device{}, seed: seed, defaults: &defaults, keySalt: salt}
}

// hashID is the deterministic draw behind a device's behaviour: a 64-bit hash of seed, aspect and id.
func hashID(seed int64, aspect byte, id string) uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seed))
	b[8] = aspect
	h.Write(b[:])
	h.Write([]byte(id))
	x := h.Sum64()
	// splitmix64 finalizer: FNV's low bits are weak for ids that differ only in their last digits.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// shareThreshold turns a share into a hash threshold for devices judged alone (explicit or created).
func shareThreshold(s float64) uint64 {
	if s <= 0 {
		return 0
	}
	if s >= 1 {
		return math.MaxUint64
	}
	return uint64(s * float64(math.MaxUint64))
}

// aspectShare is one drawn aspect of a behaviour: the share of devices it hits, the aspect its hash
// draws with, and the flag it sets.
type aspectShare struct {
	share  float64
	aspect byte
	flag   uint8
}

// aspectShares lists the drawn aspects of b. Lone devices and generated groups both draw from this
// one list, so an aspect added here reaches both.
func aspectShares(b *Behavior) [4]aspectShare {
	return [4]aspectShare{
		{b.Offline, aspectOffline, flagOffline},
		{b.MethodFailure, aspectMethodFailure, flagMethodFailure},
		{b.MethodTimeout, aspectMethodTimeout, flagMethodTimeout},
		{b.ConvergeFailure, aspectConvergeFailure, flagConvergeFailure},
	}
}

// flagsFor decides a lone device's flags from its behaviour.
func flagsFor(seed int64, id string, b *Behavior) uint8 {
	var f uint8
	for _, a := range aspectShares(b) {
		if a.share > 0 && (a.share >= 1 || hashID(seed, a.aspect, id) < shareThreshold(a.share)) {
			f |= a.flag
		}
	}
	return f
}

// load adds a fleet's devices. Generated groups get exact shares: round(share × count) devices, those
// with the smallest hashes.
func (s *store) load(f *Fleet, now int64) error {
	if f == nil {
		return nil
	}
	total := len(f.Devices)
	for _, g := range f.Groups {
		total += g.Count
	}
	if s.byID == nil || len(s.byID) == 0 {
		s.byID = make(map[string]*device, total)
		s.order = make([]*device, 0, total)
	}
	for gi := range f.Groups {
		g := &f.Groups[gi]
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
			k := int(math.Round(a.share * float64(g.Count)))
			if k <= 0 {
				continue
			}
			if k >= g.Count {
				for i := range devs {
					devs[i].flags |= a.flag
				}
				continue
			}
			hs := make([]uint64, len(devs))
			for i := range devs {
				hs[i] = hashID(s.seed, a.aspect, devs[i].id)
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
		for i := range devs {
			if err := s.insert(&devs[i]); err != nil {
				return err
			}
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
		if spec.ConnectionState == "Disconnected" {
			d.flags |= flagOffline
		}
		if err := s.insert(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) initDevice(d *device, now int64) {
	d.idAny = d.id
	d.version, d.desiredVer, d.reportedVer, d.deviceETag = 1, 1, 1, 1
	d.created, d.desiredAt, d.reportedAt, d.statusAt = now, now, now, now
}

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

// snapshot returns a copy of a device's state, safe to read without the lock.
func (s *store) snapshot(id string) (device, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.get(id)
	if err != nil {
		return device{}, err
	}
	return *d, nil
}

// remove deletes a device identity and its twin.
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

// keys returns a device's symmetric keys; generated devices derive theirs from the seed and id, so that a
// million devices do not each carry two key strings.
func (s *store) keys(d *device) (string, string) {
	if d.primaryKey != "" {
		return d.primaryKey, d.secondaryKey
	}
	mac := hmac.New(sha256.New, s.keySalt)
	mac.Write([]byte("primary/" + d.id))
	p := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	mac.Reset()
	mac.Write([]byte("secondary/" + d.id))
	return p, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// createDevice adds a device through the registry API.
func (s *store) createDevice(req *hubapi.Device, now int64) (device, error) {
	if err := validDeviceID(req.DeviceID); err != nil {
		return device{}, hubErr(hubapi.CodeArgumentInvalid, "%v", err)
	}
	d := &device{id: req.DeviceID, beh: s.defaults, disabled: req.Status == "disabled", statusReason: req.StatusReason}
	if req.Capabilities != nil {
		d.iotEdge = req.Capabilities.IoTEdge
	}
	if err := checkKeys(req); err != nil {
		return device{}, err
	}
	if a := req.Authentication; a != nil && a.SymmetricKey != nil {
		d.primaryKey, d.secondaryKey = a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey
	}
	if d.primaryKey != "" || d.secondaryKey != "" {
		// A caller that gives one key gets the other generated, as the hub does.
		p, sk := s.keys(&device{id: d.id})
		if d.primaryKey == "" {
			d.primaryKey = p
		}
		if d.secondaryKey == "" {
			d.secondaryKey = sk
		}
	}
	s.initDevice(d, now)
	d.flags = flagsFor(s.seed, d.id, d.beh)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byID[d.id]; dup {
		return device{}, hubErr(hubapi.CodeDeviceAlreadyExists, "A device with ID '%s' is already registered.", d.id)
	}
	s.lag.recordCreate(d)
	_ = s.insert(d)
	return *d, nil
}

// checkKeys holds the symmetric keys a registry write gives (empty ones are generated) to the hub's
// rule: base64 of 16 to 64 bytes. The error never repeats a key.
func checkKeys(req *hubapi.Device) error {
	a := req.Authentication
	if a == nil || a.SymmetricKey == nil {
		return nil
	}
	for _, k := range []string{a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey} {
		if k == "" {
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) < 16 || len(b) > 64 {
			return hubErr(hubapi.CodeArgumentInvalid, "The symmetric key must be base64 of 16 to 64 bytes")
		}
	}
	return nil
}

// updateDevice replaces the mutable identity fields of an existing device (PUT /devices/{id} with an
// If-Match header, or on an existing id).
func (s *store) updateDevice(req *hubapi.Device, ifMatch string, now int64) (device, error) {
	if err := checkKeys(req); err != nil {
		return device{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.get(req.DeviceID)
	if err != nil {
		return device{}, err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != deviceETag(d.deviceETag) {
		return device{}, hubErr(hubapi.CodePreconditionFailed, "Precondition failed: Device version did not match")
	}
	disabled := req.Status == "disabled"
	if disabled != d.disabled {
		d.disabled = disabled
		d.statusAt = now
	}
	d.statusReason = req.StatusReason
	if a := req.Authentication; a != nil && a.SymmetricKey != nil && a.SymmetricKey.PrimaryKey != "" {
		d.primaryKey, d.secondaryKey = a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey
	}
	d.deviceETag++
	return *d, nil
}

// twinWrite is a validated write to a twin: tags and desired of a PATCH (merge) or PUT (replace).
type twinWrite struct {
	tags, desired       map[string]any
	hasTags, hasDesired bool
	replace             bool
}

// writeTwin applies w to the twin of id, checking ifMatch against the twin etag.
func (s *store) writeTwin(id string, w *twinWrite, ifMatch string, now int64) (device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.get(id)
	if err != nil {
		return device{}, err
	}
	if etag, cond := parseIfMatch(ifMatch); cond && etag != twinETag(d.version) {
		return device{}, hubErr(hubapi.CodePreconditionFailed, "ETag mismatch for device ID '%s'", id)
	}
	if err := s.applyWrite(d, w, nil, nil, now); err != nil {
		return device{}, err
	}
	return *d, nil
}

// applyWrite changes one twin; memos (optional) share results between twins that share maps. Callers hold
// mu. The sizes of the results are checked, since a patch can grow a twin past its limits.
func (s *store) applyWrite(d *device, w *twinWrite, tagMemo, desMemo *patchMemo, now int64) error {
	tags, desired := d.tags, d.desired
	switch {
	case w.replace:
		if w.hasTags {
			tags = dropNulls(w.tags)
		}
		if w.hasDesired {
			desired = dropNulls(w.desired)
		}
	default:
		if w.hasTags {
			if tagMemo != nil {
				tags = tagMemo.apply(tags)
			} else {
				tags = mergePatch(tags, w.tags)
			}
		}
		if w.hasDesired {
			if desMemo != nil {
				desired = desMemo.apply(desired)
			} else {
				desired = mergePatch(desired, w.desired)
			}
		}
	}
	// Results built through a memo were checked once for the first twin; the sizes of shared maps are
	// the same for every twin that shares them.
	if tagMemo == nil && w.hasTags {
		if err := validateSection(tags, false, maxTagsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin tags are invalid: %v", err)
		}
	}
	if desMemo == nil && w.hasDesired {
		if err := validateSection(desired, false, maxPropsBytes); err != nil {
			return hubErr(hubapi.CodeArgumentInvalid, "Twin desired properties are invalid: %v", err)
		}
	}
	s.lag.record(d)
	d.twinPatches++
	changed := false
	if w.hasTags {
		d.tags = tags
		changed = true
	}
	if w.hasDesired {
		d.desired = desired
		d.desiredVer++
		d.desiredAt = now
		if w.replace {
			d.desiredMeta = touchMeta(nil, desired, now, d.desiredVer)
		} else {
			d.desiredMeta = touchMeta(d.desiredMeta, w.desired, now, d.desiredVer)
		}
		changed = true
		if s.onDesired != nil {
			s.onDesired(d)
		}
	}
	if changed {
		d.version++
	}
	return nil
}

// report merges the device's desired values into its reported properties, as a simulated device does
// once it has applied them.
func (s *store) report(d *device, memo *reportMemo, now int64) {
	s.lag.record(d)
	d.reported = memo.apply(d.reported, d.desired)
	d.reportedVer++
	d.reportedAt = now
	d.reportedMeta = touchMeta(d.reportedMeta, d.desired, now, d.reportedVer)
	d.lastActivity = now
	d.reports++
}

// reportMemo shares merged reported maps between twins with the same reported and desired maps.
type reportMemo struct {
	cache map[[2]uintptr]reportEntry
}

type reportEntry struct{ reported, desired, out map[string]any }

func (m *reportMemo) apply(reported, desired map[string]any) map[string]any {
	if m.cache == nil {
		m.cache = map[[2]uintptr]reportEntry{}
	}
	key := [2]uintptr{mapID(reported), mapID(desired)}
	if e, ok := m.cache[key]; ok {
		return e.out
	}
	out := mergePatch(reported, desired)
	if len(m.cache) > 4096 {
		clear(m.cache)
	}
	m.cache[key] = reportEntry{reported, desired, out}
	return out
}

// deviceJSON is the registry view of a device.
func (s *store) deviceJSON(d *device) *hubapi.Device {
	p, sk := s.keys(d)
	act := hubapi.NewTime(time.Time{})
	if d.lastActivity != 0 {
		act = hubapi.NewTime(time.Unix(0, d.lastActivity))
	}
	st := hubapi.NewTime(time.Unix(0, d.statusAt))
	return &hubapi.Device{
		DeviceID:                   d.id,
		GenerationID:               "6" + strconv.FormatUint(hashID(s.seed, 0, d.id)%1e17, 10),
		ETag:                       deviceETag(d.deviceETag),
		ConnectionState:            d.connectionState(),
		Status:                     d.status(),
		StatusReason:               d.statusReason,
		ConnectionStateUpdatedTime: &st,
		StatusUpdatedTime:          &st,
		LastActivityTime:           &act,
		Authentication: &hubapi.AuthenticationMechanism{
			Type:           "sas",
			SymmetricKey:   &hubapi.SymmetricKey{PrimaryKey: p, SecondaryKey: sk},
			X509Thumbprint: &hubapi.X509Thumbprint{},
		},
		Capabilities: &hubapi.Capabilities{IoTEdge: d.iotEdge},
	}
}
