package emulator

import (
	"net/http"
	"strconv"

	"github.com/iot-rollout/rollout/hubapi"
)

// stateTier adds the tier headers (hubapi.HeaderEmulatorTier and HeaderEmulatorUnits) that every
// response carries, errors and /_emulator/ endpoints included.
func (s *Server) stateTier(h http.Header) {
	h.Set(hubapi.HeaderEmulatorTier, s.quotas.Tier)
	h.Set(hubapi.HeaderEmulatorUnits, strconv.Itoa(s.quotas.Units))
}

// registryStatistics serves GET /statistics/devices: the registry's device counts.
func (s *Server) registryStatistics(w http.ResponseWriter) error {
	var st hubapi.RegistryStatistics
	s.store.mu.RLock()
	for _, d := range s.store.byID {
		if d.deleted {
			continue
		}
		st.TotalDeviceCount++
		if d.disabled {
			st.DisabledDeviceCount++
		} else {
			st.EnabledDeviceCount++
		}
	}
	s.store.mu.RUnlock()
	return writeOK(w, st)
}

// serviceStatistics serves GET /statistics/service: how many devices are connected.
func (s *Server) serviceStatistics(w http.ResponseWriter) error {
	var st hubapi.ServiceStatistics
	s.store.mu.RLock()
	for _, d := range s.store.byID {
		if !d.deleted && d.connectionState() == "Connected" {
			st.ConnectedDeviceCount++
		}
	}
	s.store.mu.RUnlock()
	return writeOK(w, st)
}
