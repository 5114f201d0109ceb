package emulator

import (
	"encoding/binary"
	"math"

	"github.com/iot-rollout/rollout/internal/stablehash"
)

// Device flags, decided once per device from its behaviour, the seed and a hash of its id.
const (
	flagOffline uint8 = 1 << iota
	flagMethodFailure
	flagMethodTimeout
	flagConvergeFailure
	// flagExternal marks a device driven by a real client from now on: connected by MQTT, or waiting for
	// one (behavior driver: external). It is never simulated again during the run.
	flagExternal
	// flagConnected is set while an external device has a live connection.
	flagConnected
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
	group string      // generated group name; "" for explicit or created devices
	mod   *moduleInfo // set when this is a module identity of device id, nil for a device

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
	connAt                        int64 // when connectionState last changed; 0: statusAt
	desiredMeta, reportedMeta     []metaEntry
	methodCalls, twinPatches      uint32
	reports, methodCallsDelivered uint32
}

// key names the identity among identities and live connections: the device id, or for a module
// {deviceId}/{moduleId} ('/' cannot occur in either id).
func (d *device) key() string {
	if d.mod != nil {
		return d.mod.key
	}
	return d.id
}

func (d *device) offline() bool { return d.flags&flagOffline != 0 }

func (d *device) external() bool { return d.flags&flagExternal != 0 }

// connected reports whether the device is online: an external device while its client is connected,
// a simulated one unless it is in its group's offline share.
func (d *device) connected() bool {
	if d.external() {
		return d.flags&flagConnected != 0
	}
	return !d.offline()
}

// connectionState is the twin's connectionState.
func (d *device) connectionState() string {
	if !d.connected() {
		return "Disconnected"
	}
	return "Connected"
}

// connectionStateAt is when connectionState last changed (unix nanoseconds).
func (d *device) connectionStateAt() int64 {
	if d.connAt != 0 {
		return d.connAt
	}
	return d.statusAt
}

func (d *device) status() string {
	if d.disabled {
		return "disabled"
	}
	return "enabled"
}

// hashID is the deterministic draw behind a device's behaviour: a 64-bit hash of seed, aspect and id.
func hashID(seed int64, aspect byte, id string) uint64 {
	var b [9]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seed))
	b[8] = aspect
	return stablehash.New().Bytes(b[:]).String(id).Sum()
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
