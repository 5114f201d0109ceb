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
	return writeOK(w, s.store.registryStatistics())
}

// serviceStatistics serves GET /statistics/service: how many devices are connected.
func (s *Server) serviceStatistics(w http.ResponseWriter) error {
	return writeOK(w, s.store.serviceStatistics())
}

// registryStatistics counts the registered devices, enabled and disabled.
func (s *store) registryStatistics() hubapi.RegistryStatistics {
	var st hubapi.RegistryStatistics
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.byID {
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
	return st
}

// serviceStatistics counts the connected devices.
func (s *store) serviceStatistics() hubapi.ServiceStatistics {
	var st hubapi.ServiceStatistics
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.byID {
		if !d.deleted && d.connectionState() == "Connected" {
			st.ConnectedDeviceCount++
		}
	}
	return st
}
