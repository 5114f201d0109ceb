package engine_test

import (
	"reflect"
	"testing"

	"github.com/iot-rollout/rollout/engine"
)

func TestHubSummaries(t *testing.T) {
	rows := []engine.ReportRow{
		{Device: "us/d1", Outcome: engine.Succeeded},
		{Device: "eu/d1", Outcome: engine.Failed, RolledBack: true},
		{Device: "eu/d2", Outcome: engine.TimedOut},
		{Device: "eu/d3", Outcome: engine.Pending},
		{Device: "eu/d4", Outcome: engine.Succeeded, RolledBack: true},
		{Device: "us/d2", Outcome: engine.Unreachable},
	}
	want := []engine.HubSummary{
		{Hub: "eu", Devices: 4, Succeeded: 1, Failed: 2, Pending: 1, RolledBack: 2},
		{Hub: "us", Devices: 2, Succeeded: 1, Failed: 1},
	}
	if got := engine.HubSummaries(rows); !reflect.DeepEqual(got, want) {
		t.Errorf("HubSummaries = %+v, want %+v", got, want)
	}
	if got := engine.HubSummaries([]engine.ReportRow{{Device: "plain", Outcome: engine.Succeeded}}); got != nil {
		t.Errorf("HubSummaries of plain ids = %+v, want nil", got)
	}
}
