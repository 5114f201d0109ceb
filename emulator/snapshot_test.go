package emulator_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
)

func TestDataFileRoundTrip(t *testing.T) {
	data := filepath.Join(t.TempDir(), "hub.jsonl")
	fleet, err := emulator.LoadFleet(smallFleet)
	if err != nil {
		t.Fatal(err)
	}
	s, err := emulator.Start(t.Context(), emulator.Options{Fleet: fleet, DataFile: data})
	if err != nil {
		t.Fatal(err)
	}
	do(t, s, "PATCH", "/twins/Device-1", `{"tags":{"kept":"yes"}}`)
	do(t, s, "PUT", "/devices/created-1", `{"deviceId":"created-1"}`)
	do(t, s, "POST", "/twins/eu-0001/methods", `{"methodName":"m"}`)
	createJob(t, s, `{"jobId":"j1","type":"scheduleUpdateTwin","queryCondition":"deviceId = 'eu-0002'","updateTwin":{"etag":"*","tags":{"j":"1"}}}`)
	waitJob(t, s, "j1", 5*time.Second)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	createJob(t, s, `{"jobId":"later","type":"scheduleDeviceMethod","queryCondition":"*","startTime":"`+future+`","cloudToDeviceMethod":{"methodName":"m"}}`)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("no data file: %v", err)
	}

	s2 := emulatortest.Start(t, smallFleet, emulator.Options{DataFile: data})
	_, body := do(t, s2, "GET", "/twins/Device-1", "")
	tw := decodeTwin(t, body)
	if path(tw, "tags", "kept") != "yes" || tw["version"] != 2.0 {
		t.Errorf("twin after restart: %s", body)
	}
	if resp, _ := do(t, s2, "GET", "/devices/created-1", ""); resp.StatusCode != 200 {
		t.Errorf("created device lost: %d", resp.StatusCode)
	}
	if jr := getJob(t, s2, "j1"); jr.Status != "completed" || jr.DeviceJobStatistics.SucceededCount != 1 {
		t.Errorf("job after restart: %+v", jr)
	}
	if jr := getJob(t, s2, "later"); jr.Status != "scheduled" {
		t.Errorf("scheduled job after restart is %s", jr.Status)
	}
	if ds, _ := s2.DeviceStats("eu-0001"); ds.MethodInvocations != 1 {
		t.Errorf("invocation counts lost: %+v", ds)
	}
	items, _, _ := queryAll(t, s2, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'", 10)
	if len(items) != 1 || !strings.Contains(string(items[0]), `"deviceId":"eu-0002"`) {
		t.Errorf("devices.jobs after restart: %s", items)
	}
}

func TestDataFileBad(t *testing.T) {
	data := filepath.Join(t.TempDir(), "hub.jsonl")
	for _, content := range []string{"not json", `{"format":"other"}`, `{"format":"rollout-emulator-data/1"}` + "\n" + `{"device":{"id":"bad/id"}}`} {
		if err := os.WriteFile(data, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := emulator.Start(t.Context(), emulator.Options{DataFile: data}); err == nil {
			s.Close()
			t.Errorf("data file %q accepted", content)
		}
	}
}
