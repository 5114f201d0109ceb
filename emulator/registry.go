package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// keys returns a device's symmetric keys; generated devices derive theirs from the seed and id, so that a
// million devices do not each carry two key strings.
func (s *store) keys(d *device) (string, string) {
	if d.primaryKey != "" {
		return d.primaryKey, d.secondaryKey
	}
	mac := hmac.New(sha256.New, s.keySalt)
	mac.Write([]byte("primary/" + d.key()))
	p := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	mac.Reset()
	mac.Write([]byte("secondary/" + d.key()))
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
	if err := checkKeys(req.Authentication); err != nil {
		return device{}, err
	}
	s.setKeys(d, req.Authentication)
	s.initDevice(d, now)
	d.flags = flagsFor(s.seed, d.id, d.beh)
	if d.beh.External {
		d.flags |= flagExternal
	}
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
func checkKeys(a *hubapi.AuthenticationMechanism) error {
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
	if err := checkKeys(req.Authentication); err != nil {
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
		if disabled {
			s.revokeIdentity(d, "the device was disabled")
			for _, m := range s.modulesOf(d.id) {
				s.revokeIdentity(m, "the device was disabled")
			}
		}
	}
	d.statusReason = req.StatusReason
	if a := req.Authentication; a != nil && a.SymmetricKey != nil && a.SymmetricKey.PrimaryKey != "" {
		d.primaryKey, d.secondaryKey = a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey
	}
	d.deviceETag++
	return *d, nil
}

// deviceJSON is the registry view of a device.
func (s *store) deviceJSON(d *device) *hubapi.Device {
	p, sk := s.keys(d)
	act := hubapi.NewTime(time.Time{})
	if d.lastActivity != 0 {
		act = hubapi.NewTime(time.Unix(0, d.lastActivity))
	}
	st := hubapi.NewTime(time.Unix(0, d.statusAt))
	ct := hubapi.NewTime(time.Unix(0, d.connectionStateAt()))
	return &hubapi.Device{
		DeviceID:                   d.id,
		GenerationID:               "6" + strconv.FormatUint(hashID(s.seed, 0, d.id)%1e17, 10),
		ETag:                       deviceETag(d.deviceETag),
		ConnectionState:            d.connectionState(),
		Status:                     d.status(),
		StatusReason:               d.statusReason,
		ConnectionStateUpdatedTime: &ct,
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

// devices is the registry view of the first top devices, in creation order.
func (s *store) devices(top int) []*hubapi.Device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*hubapi.Device, 0, min(top, len(s.byID)))
	for _, d := range s.order {
		if len(out) == top {
			break
		}
		if !d.deleted {
			out = append(out, s.deviceJSON(d))
		}
	}
	return out
}
