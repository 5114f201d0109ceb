package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Stats is what the emulator observed, for tests and the demo: per-device method invocations and twin
// writes, the job timeline and quota use. /_emulator/stats serves the same as JSON, leaving the
// per-device map out past maxStatsDevices devices unless asked with ?devices=all.
type Stats struct {
	Devices  int                    `json:"devices"`
	Totals   Totals                 `json:"totals"`
	Requests int64                  `json:"requests"`
	Faults   int64                  `json:"faultsInjected"`
	Errors   map[string]int64       `json:"errors"`      // error responses by code name
	Device   map[string]DeviceStats `json:"deviceStats"` // devices with at least one count
	Jobs     []JobEvent             `json:"jobTimeline"`
	Quotas   map[string]QuotaUse    `json:"quotas"`
	Tier     string                 `json:"tier"`
	Pending  int                    `json:"pendingReports"` // desired changes not yet reported back
}

// Totals sums the per-device counts over the fleet.
type Totals struct {
	MethodInvocations int64 `json:"methodInvocations"`
	MethodsDelivered  int64 `json:"methodsDelivered"`
	TwinPatches       int64 `json:"twinPatches"`
	Reports           int64 `json:"reports"`
	Telemetry         int64 `json:"telemetryMessages"` // device-to-cloud messages from connected devices
}

// maxStatsDevices bounds the per-device map /_emulator/stats serves by default: after a job over a
// million devices, it would be hundreds of megabytes.
const maxStatsDevices = 10_000

// DeviceStats counts what happened to one device.
type DeviceStats struct {
	MethodInvocations int    `json:"methodInvocations"` // direct calls and job calls, offline devices included
	MethodsDelivered  int    `json:"methodsDelivered"`  // invocations an online device received
	TwinPatches       int    `json:"twinPatches"`       // PATCH, PUT and job updates of tags or desired
	Reports           int    `json:"reports"`           // reported-property updates by the simulated device
	ConnectionState   string `json:"connectionState"`
	Offline           bool   `json:"offline"`
	MethodFailure     bool   `json:"methodFailure"`
	MethodTimeout     bool   `json:"methodTimeout"`
	ConvergeFailure   bool   `json:"convergeFailure"`
	Group             string `json:"group,omitempty"`
}

// JobEvent is one status change of a job.
type JobEvent struct {
	JobID  string    `json:"jobId"`
	Status string    `json:"status"`
	Time   time.Time `json:"time"`
}

// QuotaUse is one quota's limit and how often it was used and exceeded.
type QuotaUse struct {
	LimitPerSecond float64 `json:"limitPerSecond"` // 0 means unlimited
	Used           int64   `json:"used"`
	Throttled      int64   `json:"throttled"`
}

func deviceStats(d *device) DeviceStats {
	return DeviceStats{
		MethodInvocations: int(d.methodCalls), MethodsDelivered: int(d.methodCallsDelivered),
		TwinPatches: int(d.twinPatches), Reports: int(d.reports), ConnectionState: d.connectionState(),
		Offline: d.offline(), MethodFailure: d.flags&flagMethodFailure != 0,
		MethodTimeout: d.flags&flagMethodTimeout != 0, ConvergeFailure: d.flags&flagConvergeFailure != 0,
		Group: d.group,
	}
}

// errorCounts counts error responses by code; it is safe for concurrent use.
type errorCounts struct {
	mu     sync.Mutex
	byCode map[string]int64
}

func (c *errorCounts) add(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byCode == nil {
		c.byCode = map[string]int64{}
	}
	c.byCode[code]++
}

// copyTo puts the counts into m.
func (c *errorCounts) copyTo(m map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.byCode {
		m[k] = v
	}
}

// Stats returns a snapshot of what the emulator observed. Device holds only devices with a non-zero count.
func (s *Server) Stats() Stats {
	st := Stats{Device: map[string]DeviceStats{}, Quotas: map[string]QuotaUse{}, Errors: map[string]int64{}, Tier: s.quotas.Tier}
	st.Requests = s.requests.Load()
	st.Faults = s.faultCount.Load()
	s.errors.copyTo(st.Errors)
	st.Devices = s.store.observe(st.Device, &st.Totals)
	st.Jobs = s.jobs.events()
	for name, c := range s.limits.use {
		lim := c.limit
		if lim > 1e300 {
			lim = 0
		}
		st.Quotas[name] = QuotaUse{LimitPerSecond: lim, Used: c.used.Load(), Throttled: c.throttled.Load()}
	}
	st.Pending = s.conv.pending()
	st.Totals.Telemetry = s.conns.telemetry.Load()
	return st
}

// DeviceStats returns one device's counts; false when the device does not exist.
func (s *Server) DeviceStats(id string) (DeviceStats, bool) {
	return s.store.deviceStats(id)
}

// observe puts the counts of each device with one into per and adds them to totals; it returns how
// many devices the registry holds.
func (s *store) observe(per map[string]DeviceStats, totals *Totals) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.order {
		if !d.deleted && (d.methodCalls|d.twinPatches|d.reports) != 0 {
			per[d.id] = deviceStats(d)
			totals.MethodInvocations += int64(d.methodCalls)
			totals.MethodsDelivered += int64(d.methodCallsDelivered)
			totals.TwinPatches += int64(d.twinPatches)
			totals.Reports += int64(d.reports)
		}
	}
	return len(s.byID)
}

// deviceStats returns one device's counts; false when the device does not exist.
func (s *store) deviceStats(id string) (DeviceStats, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.byID[id]
	if !ok {
		return DeviceStats{}, false
	}
	return deviceStats(d), true
}

// serveEmulator answers /_emulator/ requests: stats, devices/{id}, jobs, jobs/{id} and connections. They need no
// token: they are the emulator's own, outside IoT Hub's paths.
func (s *Server) serveEmulator(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/_emulator/")
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "only GET is served under /_emulator/"})
		return
	}
	switch {
	case len(parts) == 1 && parts[0] == "stats":
		st := s.Stats()
		if len(st.Device) > maxStatsDevices && r.URL.Query().Get("devices") != "all" {
			out := struct {
				Stats
				Omitted int `json:"deviceStatsOmitted"`
			}{st, len(st.Device)}
			out.Device = nil
			writeJSON(w, http.StatusOK, out)
			return
		}
		writeJSON(w, http.StatusOK, st)
	case len(parts) == 1 && parts[0] == "devices":
		st := s.Stats()
		if len(st.Device) > maxStatsDevices && r.URL.Query().Get("devices") != "all" {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
				"error": "more than 10000 devices have counts; ask /_emulator/devices/{id}, or ?devices=all for every one", "devices": len(st.Device)})
			return
		}
		writeJSON(w, http.StatusOK, st.Device)
	case len(parts) == 2 && parts[0] == "devices":
		ds, ok := s.DeviceStats(parts[1])
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no device " + parts[1]})
			return
		}
		writeJSON(w, http.StatusOK, ds)
	case len(parts) == 1 && parts[0] == "jobs":
		jobs, timeline := s.jobs.responses()
		writeJSON(w, http.StatusOK, map[string]any{"timeline": timeline, "jobs": jobs})
	case len(parts) == 2 && parts[0] == "jobs":
		job, events, err := s.jobs.describe(parts[1])
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no job " + parts[1]})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"job": job, "timeline": events})
	case len(parts) == 1 && parts[0] == "connections":
		live, ended := s.Connections()
		writeJSON(w, http.StatusOK, map[string]any{"connections": live, "disconnected": ended})
	case len(parts) == 1 && parts[0] == "health":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	default:
		names := []string{"stats", "devices", "devices/{id}", "jobs", "jobs/{id}", "health", "connections"}
		sort.Strings(names)
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown emulator endpoint", "endpoints": names})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
