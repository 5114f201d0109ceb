package engine

import (
	"reflect"
	"testing"

	"github.com/iot-rollout/rollout/hubapi"
)

func TestJobOutcomes(t *testing.T) {
	status := func(n int32) *hubapi.DeviceJobOutcome {
		return &hubapi.DeviceJobOutcome{DeviceMethodResponse: &hubapi.MethodResult{Status: n}}
	}
	ids := []string{"a", "b", "c", "d"}
	tests := []struct {
		name   string
		rows   []hubapi.DeviceJob
		how    jobRead
		counts Counts
		record map[string]Outcome
	}{
		{"twin job: only failures read", []hubapi.DeviceJob{
			{DeviceID: "b", Status: hubapi.DeviceJobFailed, Error: &hubapi.DeviceJobError{Code: "DeviceNotOnline"}},
		}, jobRead{}, Counts{Targeted: 4, Succeeded: 3, Unreachable: 1}, map[string]Outcome{"b": Unreachable}},
		{"method job: every answer recorded", []hubapi.DeviceJob{
			{DeviceID: "a", Status: hubapi.DeviceJobCompleted, Outcome: status(200)},
			{DeviceID: "b", Status: hubapi.DeviceJobCompleted, Outcome: status(500)},
			{DeviceID: "c", Status: hubapi.DeviceJobFailed, Error: &hubapi.DeviceJobError{Code: "GatewayTimeout"}},
		}, jobRead{method: true, all: true}, Counts{Targeted: 4, Succeeded: 1, Failed: 2, MethodError: 1, TimedOut: 1},
			map[string]Outcome{"a": Succeeded, "b": MethodError, "c": TimedOut, "d": Failed}},
		{"the job failed before it reached devices", nil, jobRead{method: true, all: true, jobFailed: true},
			Counts{Targeted: 4, Failed: 4}, map[string]Outcome{"a": Failed, "b": Failed, "c": Failed, "d": Failed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, record := jobOutcomes(ids, tt.rows, tt.how)
			if c != tt.counts {
				t.Errorf("counts %+v, want %+v", c, tt.counts)
			}
			got := map[string]Outcome{}
			for id, o := range record {
				got[id] = o.Outcome
			}
			if !reflect.DeepEqual(got, tt.record) {
				t.Errorf("recorded %v, want %v", got, tt.record)
			}
		})
	}
	_, record := jobOutcomes(ids, nil, jobRead{method: true, all: true})
	if o := record["a"]; o.ErrorCode != CodeDeviceNotFound || mayHaveRun(o) {
		t.Errorf("a device the job never took: %+v; it must not be compensated", o)
	}
}
