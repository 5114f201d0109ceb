package emulator_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// TestTierHeaders: every response states the emulated tier and units, successes, hub errors,
// refused tokens and the emulator's own endpoints alike.
func TestTierHeaders(t *testing.T) {
	for _, c := range []struct {
		opts        emulator.Options
		tier, units string
	}{
		{emulator.Options{}, "unlimited", "1"},
		{emulator.Options{Tier: "S1"}, "S1", "1"},
		{emulator.Options{Tier: "s3", Units: 10}, "S3", "10"},
		{emulator.Options{Tier: "Free"}, "F1", "1"},
	} {
		s := start(t, c.opts)
		check := func(what string, h http.Header) {
			t.Helper()
			if got := h.Get(hubapi.HeaderEmulatorTier); got != c.tier {
				t.Errorf("tier %s: %s: %s %q, want %q", c.opts.Tier, what, hubapi.HeaderEmulatorTier, got, c.tier)
			}
			if got := h.Get(hubapi.HeaderEmulatorUnits); got != c.units {
				t.Errorf("tier %s: %s: %s %q, want %q", c.opts.Tier, what, hubapi.HeaderEmulatorUnits, got, c.units)
			}
		}
		resp, _ := do(t, s, "GET", "/twins/Device-1", "")
		check("a twin", resp.Header)
		resp, body := do(t, s, "GET", "/twins/nobody", "")
		wantError(t, resp, body, http.StatusNotFound, "DeviceNotFound")
		check("a 404", resp.Header)
		resp, _ = do(t, s, "GET", "/statistics/service", "", "Authorization", "SharedAccessSignature sr=x&sig=eA%3D%3D&se=1&skn=iothubowner")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("bad token: status %d, want 401", resp.StatusCode)
		}
		check("a 401", resp.Header)
		hr, err := http.Get(s.URL() + "/_emulator/health")
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		check("/_emulator/health", hr.Header)
	}
}

// TestStatistics: GET /statistics/devices and /statistics/service answer as the swagger's
// RegistryStatistics and ServiceStatistics, counting the fleet.
func TestStatistics(t *testing.T) {
	s := start(t, emulator.Options{})
	sw := hubapitest.LoadSwagger(t, "")
	if resp, body := do(t, s, "PUT", "/devices/off-1", `{"deviceId":"off-1","status":"disabled"}`); resp.StatusCode != 200 {
		t.Fatalf("creating a disabled device: %d %s", resp.StatusCode, body)
	}
	resp, body := do(t, s, "GET", "/statistics/devices", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/statistics/devices: %d %s", resp.StatusCode, body)
	}
	if err := sw.Validate("RegistryStatistics", body); err != nil {
		t.Errorf("/statistics/devices body %s: %v", body, err)
	}
	var reg hubapi.RegistryStatistics
	if err := json.Unmarshal(body, &reg); err != nil {
		t.Fatal(err)
	}
	// small.yaml: 20 canary, 100 eu and 3 explicit devices, plus the disabled one created above.
	if want := (hubapi.RegistryStatistics{TotalDeviceCount: 124, EnabledDeviceCount: 123, DisabledDeviceCount: 1}); reg != want {
		t.Errorf("registry statistics %+v, want %+v", reg, want)
	}

	resp, body = do(t, s, "GET", "/statistics/service", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/statistics/service: %d %s", resp.StatusCode, body)
	}
	if err := sw.Validate("ServiceStatistics", body); err != nil {
		t.Errorf("/statistics/service body %s: %v", body, err)
	}
	var svc hubapi.ServiceStatistics
	if err := json.Unmarshal(body, &svc); err != nil {
		t.Fatal(err)
	}
	// Offline: 10% of canary (2) and offline-1. A created device is online.
	if svc.ConnectedDeviceCount != 121 {
		t.Errorf("connected devices %d, want 121", svc.ConnectedDeviceCount)
	}

	resp, body = do(t, s, "POST", "/statistics/service", "")
	wantError(t, resp, body, http.StatusMethodNotAllowed, "GenericMethodNotAllowed")
}
