package emulator

import (
	"encoding/json"
	"math"

	"github.com/iot-rollout/rollout/hubapi"
)

// This file holds the store's transitions for devices driven by a real client over MQTT: connecting
// (which takes a simulated device over for the rest of the run), disconnecting, and the twin requests
// the client makes. The live connections themselves are in deviceconn.go.

// credentials returns the symmetric keys a token of the device or module key names (see device.key)
// may be signed with, and whether it may connect (it exists and its device is enabled).
func (s *store) credentials(key string) (primary, secondary string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, err := s.identity(key)
	if err != nil || s.byID[d.id].disabled {
		return "", "", false
	}
	p, sk := s.keys(d)
	return p, sk, true
}

// The methods below name a device or a module by its key (see device.key).

// connect marks id as driven by a connected client from now on, with its connectionState changed at
// now (unix nanoseconds). A model id the client announces becomes the twin's modelId.
func (s *store) connect(id, modelID string, now int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.identity(id)
	if err != nil {
		return err
	}
	s.lag.record(d)
	d.flags |= flagExternal | flagConnected
	d.connAt, d.lastActivity = now, now
	if modelID != "" {
		d.modelID = modelID
	}
	return nil
}

// disconnect marks id's client gone at now; the device stays external, so Disconnected.
func (s *store) disconnect(id string, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.identity(id)
	if err != nil || d.flags&flagConnected == 0 {
		return
	}
	s.lag.record(d)
	d.flags &^= flagConnected
	d.connAt = now
}

// touch records activity of id's client at now.
func (s *store) touch(id string, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, err := s.identity(id); err == nil {
		d.lastActivity = now
	}
}

// twinDocument is the body of a device's twin GET over MQTT: its desired and reported properties
// with their $version, without $metadata (as the hub's documented example shows).
func (s *store) twinDocument(id string) ([]byte, error) {
	s.mu.RLock()
	d, err := s.identity(id)
	if err != nil {
		s.mu.RUnlock()
		return nil, err
	}
	desired, reported, dv, rv := d.desired, d.reported, d.desiredVer, d.reportedVer
	s.mu.RUnlock()
	// The maps are immutable once stored, so they are read without the lock.
	return json.Marshal(map[string]any{
		"desired":  withVersion(desired, dv),
		"reported": withVersion(reported, rv),
	})
}

// withVersion copies m with "$version" added.
func withVersion(m map[string]any, ver int64) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out["$version"] = ver
	return out
}

// reportPatch merges a device's reported-property patch (null deletes) at now, under the REST side's
// rules and limits, and returns the new reported version. The twin's version and etag do not change,
// as when a simulated device reports.
func (s *store) reportPatch(id string, patch map[string]any, now int64) (int64, error) {
	patch = stripSystemKeys(patch)
	if err := validateSection(patch, true, math.MaxInt); err != nil {
		return 0, hubErr(hubapi.CodeArgumentInvalid, "Twin reported properties are invalid: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.identity(id)
	if err != nil {
		return 0, err
	}
	reported := mergePatch(d.reported, patch)
	if err := validateSection(reported, false, maxPropsBytes); err != nil {
		return 0, hubErr(hubapi.CodeArgumentInvalid, "Twin reported properties are invalid: %v", err)
	}
	s.lag.record(d)
	d.reported = reported
	d.reportedVer++
	d.reportedAt = now
	d.reportedMeta = touchMeta(d.reportedMeta, patch, now, d.reportedVer)
	d.lastActivity = now
	d.reports++
	return d.reportedVer, nil
}
