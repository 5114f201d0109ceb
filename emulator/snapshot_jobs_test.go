package emulator_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
)

// TestDataFileResumesMethodJobOnce stops a hub in the middle of a paced direct-method job and starts it
// again from its data file: calls under way finish with the device's answer, calls not yet made are made
// after the restart, and no device is called twice.
func TestDataFileResumesMethodJobOnce(t *testing.T) {
	t.Parallel()
	fleet, err := emulator.ParseFleet("methods.yaml", []byte(`
groups:
  - {name: gw, count: 20, idPrefix: gw-, behavior: {methodLatency: 300ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "hub.jsonl")
	opts := emulator.Options{Fleet: fleet, DataFile: data, Tier: "S1"} // 10 job device operations a second
	s, err := emulator.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	createJob(t, s, `{"jobId":"m-resume","type":"scheduleDeviceMethod","queryCondition":"*",
		"cloudToDeviceMethod":{"methodName":"apply","payload":{"v":2},"responseTimeoutInSeconds":30}}`)
	awaitJobStatus(t, s, "m-resume", "running", 5*time.Second)
	time.Sleep(600 * time.Millisecond) // some calls done, some under way, most not made yet
	before := s.Stats().Device
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = startData(t, fleet, data)
	jr := waitJob(t, s, "m-resume", 30*time.Second)
	if st := jr.DeviceJobStatistics; jr.Status != "completed" || st == nil || st.SucceededCount != 20 || st.FailedCount != 0 {
		t.Fatalf("resumed job ended %s with %+v, want completed with 20 succeeded", jr.Status, st)
	}
	// The data file keeps the counts, so after the restart they are the whole job's.
	after := s.Stats().Device
	calledBefore := 0
	for i := range 20 {
		id := "gw-" + pad4(i)
		if n := after[id].MethodInvocations; n != 1 {
			t.Errorf("%s called %d times (%d of them before the restart), want once", id, n, before[id].MethodInvocations)
		}
		calledBefore += before[id].MethodInvocations
	}
	if calledBefore == 0 || calledBefore == 20 {
		t.Errorf("%d of 20 devices were called before the restart; the test needs a job stopped midway", calledBefore)
	}
}

func pad4(i int) string {
	s := "000" + string(rune('0'+i/10)) + string(rune('0'+i%10))
	return s[len(s)-4:]
}
