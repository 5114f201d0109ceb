package emulator_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
)

const onlineFleet = `
groups:
  - {name: late, count: 10, behavior: {offline: 30%, onlineAfter: 400ms, converge: {delay: 10ms}}}
  - {name: gone, count: 4, behavior: {offline: 50%}}
devices:
  - {deviceId: late-explicit, connectionState: Disconnected, behavior: {onlineAfter: 400ms}}
`

// TestOnlineAfter checks that the devices that start offline come online after onlineAfter, the same
// devices on every start, answering methods from then on and reporting back a desired change they
// missed; devices without onlineAfter stay offline.
func TestOnlineAfter(t *testing.T) {
	offline := func(s *emulator.Server) []string {
		items, _, _ := queryAll(t, s, "SELECT * FROM devices WHERE connectionState = 'Disconnected'", 100)
		var ids []string
		for _, it := range items {
			var tw hubapi.Twin
			if err := json.Unmarshal(it, &tw); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tw.DeviceID)
		}
		return ids
	}
	f, err := emulator.ParseFleet("online.yaml", []byte(onlineFleet))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	s := emulatortest.Start(t, "", emulator.Options{Fleet: f})
	first := offline(s)
	if len(first) != 3+2+1 {
		t.Fatalf("offline at start: %v, want 3 of late, 2 of gone and late-explicit", first)
	}
	again := offline(emulatortest.Start(t, "", emulator.Options{Fleet: f}))
	if !equalStrings(first, again) {
		t.Errorf("another start has other devices offline: %v, then %v", first, again)
	}
	late := first[0] // creation order: the late group's first offline device
	resp, body := do(t, s, "POST", "/twins/"+late+"/methods", `{"methodName":"m","responseTimeoutInSeconds":5}`)
	wantError(t, resp, body, 404, "DeviceNotOnline")
	do(t, s, "PATCH", "/twins/"+late, `{"properties":{"desired":{"fw":"2"}}}`)

	waitUntil(t, func() bool { return len(offline(s)) == 2 })
	if since := time.Since(began); since < 400*time.Millisecond {
		t.Errorf("online after %v, before onlineAfter", since)
	}
	if got := offline(s); got[0][:5] != "gone-" || got[1][:5] != "gone-" {
		t.Errorf("still offline: %v, want the gone group's two", got)
	}
	if resp, body := do(t, s, "POST", "/twins/"+late+"/methods", `{"methodName":"m","responseTimeoutInSeconds":5}`); resp.StatusCode != 200 {
		t.Errorf("method once online: %d %s", resp.StatusCode, body)
	}
	waitUntil(t, func() bool {
		_, body := do(t, s, "GET", "/twins/"+late, "")
		return path(decodeTwin(t, body), "properties", "reported", "fw") == "2"
	})
}
