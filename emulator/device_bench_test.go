package emulator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
)

// startExternalFleet starts an emulator whose n devices (b-0000...) all wait for a client.
func startExternalFleet(tb testing.TB, n int) *emulator.Server {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "fleet.yaml")
	fleet := fmt.Sprintf("groups:\n  - {name: b, count: %d, idPrefix: b-, behavior: {driver: external}}\n", n)
	if err := os.WriteFile(file, []byte(fleet), 0o644); err != nil {
		tb.Fatal(err)
	}
	return emulatortest.Start(tb, file, emulator.Options{MQTTAddr: "127.0.0.1:0"})
}

// BenchmarkMQTTMethodJob runs a direct-method job over 1,000 connected clients that answer at once, on
// the unlimited tier, and reports devices per second.
func BenchmarkMQTTMethodJob(b *testing.B) {
	const n = 1000
	s := startExternalFleet(b, n)
	for i := range n {
		id := emulator.GroupDeviceID(&emulator.Group{IDPrefix: "b-", Count: n}, i)
		answerMethods(b, connect(b, s, id), 200, `{}`)
	}
	b.ResetTimer()
	for i := range b.N {
		id := "bench-" + strconv.Itoa(i)
		createJob(b, s, `{"jobId":"`+id+`","type":"scheduleDeviceMethod","queryCondition":"STARTSWITH(deviceId, 'b-')",
			"cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":30},"maxExecutionTimeInSeconds":300}`)
		jr := waitJob(b, s, id, 120*time.Second)
		if jr.DeviceJobStatistics.SucceededCount != n {
			b.Fatalf("job stats %+v", jr.DeviceJobStatistics)
		}
		// The job's own start and end, not the polling around it.
		b.ReportMetric(float64(n)/jr.EndTime.Sub(jr.StartTime.Time).Seconds(), "devices/s")
	}
}

// BenchmarkMQTTDesiredPush measures how long a REST desired patch takes to reach a connected device.
func BenchmarkMQTTDesiredPush(b *testing.B) {
	s := startExternalFleet(b, 1)
	var mu sync.Mutex
	arrived := make(chan time.Time, 1)
	d := connect(b, s, "b-0000")
	tok := d.c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(paho.Client, paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		arrived <- time.Now()
	})
	tok.Wait()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		began := time.Now()
		do(b, s, "PATCH", "/twins/b-0000", `{"properties":{"desired":{"n":`+strconv.Itoa(i)+`}}}`)
		at := <-arrived
		lat = append(lat, at.Sub(began))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
}
