package emulator_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// TestMQTTJobOverBadAnswers runs a method job over devices whose answers the hub cannot take (not
// JSON, over 128 KB) and one that never answers: the job ends completed once their response timeout
// passes, each of their rows failed with GatewayTimeout, beside a simulated device's 200, and the
// devices stay connected.
func TestMQTTJobOverBadAnswers(t *testing.T) {
	t.Parallel()
	s := startMQTT(t)
	answerMethods(t, connect(t, s, "eu-0020"), 200, "not json")
	answerMethods(t, connect(t, s, "eu-0021"), 200, strconv.Quote(strings.Repeat("x", 130*1024)))
	silent := connect(t, s, "eu-0022")
	silent.subscribe(t, "$iothub/methods/POST/#")

	began := time.Now()
	createJob(t, s, `{"jobId":"bad-answers","type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['eu-0020','eu-0021','eu-0022','eu-0023']",
		"cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":5},"maxExecutionTimeInSeconds":60}`)
	jr := waitJob(t, s, "bad-answers", 20*time.Second)
	if jr.Status != "completed" {
		t.Fatalf("job %s", jr.Status)
	}
	if el := time.Since(began); el < 5*time.Second || el > 12*time.Second {
		t.Errorf("the job ended after %v; the devices' response timeout is 5s", el)
	}
	items, _, _ := queryAll(t, s, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'bad-answers'", 10)
	got := map[string]string{}
	for _, it := range items {
		var row hubapi.DeviceJob
		if err := json.Unmarshal(it, &row); err != nil {
			t.Fatal(err)
		}
		switch {
		case row.Error != nil:
			got[row.DeviceID] = row.Status + " " + row.Error.Code
		case row.Outcome != nil && row.Outcome.DeviceMethodResponse != nil:
			got[row.DeviceID] = row.Status + " " + strconv.Itoa(int(row.Outcome.DeviceMethodResponse.Status))
		}
	}
	want := map[string]string{"eu-0020": "failed GatewayTimeout", "eu-0021": "failed GatewayTimeout",
		"eu-0022": "failed GatewayTimeout", "eu-0023": "completed 200"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
	if !silent.c.IsConnected() {
		t.Error("a device that did not answer was disconnected")
	}
	live, _ := s.Connections()
	if len(live) != 3 {
		t.Errorf("%d live connections after the job, want the 3 devices", len(live))
	}
}

// TestMQTTOversizedPackets checks that a packet over 256 KB on any of the device's topics closes its
// connection, and that the emulator goes on serving the device when it connects again.
func TestMQTTOversizedPackets(t *testing.T) {
	s := startMQTT(t)
	big := `{"blob":"` + strings.Repeat("x", 300*1024) + `"}`
	for _, topic := range []string{
		"$iothub/twin/PATCH/properties/reported/?$rid=1",
		"$iothub/methods/res/200/?$rid=1",
		"$iothub/twin/GET/?$rid=1",
	} {
		t.Run(topic, func(t *testing.T) {
			d := connect(t, s, "Device-1")
			d.c.Publish(topic, 0, false, big)
			d.wantClosed(t)
		})
	}
	d := connect(t, s, "Device-1")
	d.subscribe(t, "$iothub/twin/res/#")
	d.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=ok", 0, `{"after":1}`)
	if m := d.waitFor(t, "$iothub/twin/res/", 1); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/?$rid=ok") {
		t.Errorf("reported patch after the oversized ones answered on %s", m.Topic())
	}
}
