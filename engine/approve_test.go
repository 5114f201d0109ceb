package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckApproval(t *testing.T) {
	waves := func(statuses ...Status) []Wave {
		names := []string{"canary", "eu", "rest"}
		var out []Wave
		for i, s := range statuses {
			out = append(out, Wave{Name: names[i], Status: s, Gated: names[i] == "eu"})
		}
		return out
	}
	st := func(s Status, ws ...Status) *State {
		return &State{Name: "fw", Status: s, PlanHash: "abc", Waves: waves(ws...)}
	}
	given := map[string]Approval{"eu": {By: "ana", At: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}}
	tests := []struct {
		name      string
		st        *State
		wave      string
		approvals map[string]Approval
		early     bool
		refused   string // "" when allowed
	}{
		{"at the gate", st(StatusRunning, StatusDone, StatusPending, StatusPending), "eu", nil, false, ""},
		{"before the gate", st(StatusRunning, StatusRunning, StatusPending, StatusPending), "eu", nil, true, ""},
		{"no gate", st(StatusRunning, StatusDone, StatusPending, StatusPending), "rest", nil, false, "has no approval gate"},
		{"twice", st(StatusRunning, StatusDone, StatusPending, StatusPending), "eu", given, false, "approved already, by ana at 2026-12-01T09:00:00Z"},
		{"gate behind", st(StatusRunning, StatusDone, StatusRunning, StatusPending), "eu", nil, false, "is running: its gate is behind it"},
		{"done", st(StatusDone, StatusDone, StatusDone, StatusDone), "eu", nil, false, "is done"},
		{"rolled back", st(StatusRolledBack, StatusDone, StatusPending, StatusPending), "eu", nil, false, "rolled back"},
		{"halted", st(StatusHalted, StatusFailed, StatusPending, StatusPending), "eu", nil, false, "until its failures are accepted"},
		{"unknown wave", st(StatusRunning, StatusDone, StatusPending, StatusPending), "us", nil, false, `no wave "us" (waves: canary, eu, rest)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := CheckApproval(tt.st, tt.wave, tt.approvals)
			if tt.refused == "" {
				if err != nil || a.Early != tt.early || a.PlanHash != "abc" {
					t.Fatalf("CheckApproval = %+v, %v; want early=%v for plan abc", a, err, tt.early)
				}
				return
			}
			var refused *RefusedError
			var unknown *UnknownWaveError
			if !errors.As(err, &refused) && !errors.As(err, &unknown) || !strings.Contains(err.Error(), tt.refused) {
				t.Fatalf("CheckApproval error = %v, want a refusal containing %q", err, tt.refused)
			}
		})
	}
}
