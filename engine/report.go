package engine

import (
	"sort"
	"time"
)

// Report is the per-device outcome report of a rollout (`rollout apply --report FILE`).
type Report struct {
	Rollout  string    `json:"rollout"`
	PlanHash string    `json:"planHash"`
	Status   Status    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
	// Created is when the rollout started, Updated when its state last changed; Rollback, once a
	// rollback started, when and how far it got.
	Created  time.Time `json:"created,omitzero"`
	Updated  time.Time `json:"updated,omitzero"`
	Rollback *Progress `json:"rollback,omitempty"`
	// Approvals are the gates people released, by wave: who, on which host, when, why, and for
	// which plan.
	Approvals map[string]Approval `json:"approvals,omitempty"`
	Waves     []Wave              `json:"waves"`
	// Hubs sums the devices of a rollout of a plan with hubs per hub (see HubSummaries); omitted
	// without hubs.
	Hubs    []HubSummary `json:"hubs,omitempty"`
	Devices []ReportRow  `json:"devices"`
}

// ReportRow is one device's outcome. Outcome is "pending" while the device's job has not been
// collected; RolledBack is set when its batch was rolled back.
type ReportRow struct {
	Device       string  `json:"deviceId"`
	Wave         string  `json:"wave"`
	Batch        int     `json:"batch"`
	Outcome      Outcome `json:"outcome"`
	MethodStatus int     `json:"methodStatus,omitempty"`
	ErrorCode    string  `json:"errorCode,omitempty"`
	RolledBack   bool    `json:"rolledBack,omitempty"`
	// Attempt is the retry the outcome is from (0: the batch's own job): a device is counted once,
	// by its last attempt.
	Attempt int `json:"attempt,omitempty"`
	// Verify is the device's verify result in a wave whose verify failed: satisfied or notSatisfied.
	Verify string `json:"verify,omitempty"`
	// Conflict is set when the rollback left the device alone: someone had changed what the rollout
	// wrote to it (see Options.Force).
	Conflict bool `json:"conflict,omitempty"`
}

// Pending is the outcome of a device whose job has not ended yet.
const Pending Outcome = "pending"

// BuildReport reads the report of the rollout in s from its state alone.
func BuildReport(s *Store, now time.Time) (*Report, error) {
	rep := &Report{Time: now.UTC(), Devices: []ReportRow{}}
	approvals, err := Approvals(s)
	if err != nil {
		return nil, err
	}
	if len(approvals) > 0 {
		rep.Approvals = approvals
	}
	err = s.View(func(tx *Tx) error {
		st, err := tx.State()
		if err != nil {
			return err
		}
		rep.Rollout, rep.PlanHash, rep.Status, rep.Reason, rep.Waves = st.Name, st.PlanHash, st.Status, st.Reason, st.Waves
		rep.Created, rep.Updated, rep.Rollback = st.Created, st.Updated, st.Rollback
		for wi, w := range st.Waves {
			if !w.Resolved {
				continue
			}
			ids, err := tx.Devices(wi)
			if err != nil {
				return err
			}
			unverified, err := tx.Unverified(wi)
			if err != nil {
				return err
			}
			for bi, b := range w.Batches {
				conflicts, err := tx.Conflicts(wi, bi)
				if err != nil {
					return err
				}
				for _, j := range b.Jobs {
					for _, id := range ids[j.Start:j.End] {
						row := ReportRow{Device: id, Wave: w.Name, Batch: bi, Outcome: Pending, RolledBack: b.RolledBack}
						if j.Collected {
							row.Outcome = Succeeded
							o, ok, err := tx.Outcome(id)
							if err != nil {
								return err
							}
							if ok {
								row.Outcome, row.MethodStatus, row.ErrorCode, row.Attempt = o.Outcome, o.MethodStatus, o.ErrorCode, o.Attempt
							}
						}
						if i := sort.SearchStrings(conflicts, id); i < len(conflicts) && conflicts[i] == id {
							row.Conflict = true
						}
						if unverified != nil {
							row.Verify = "satisfied"
							if i := sort.SearchStrings(unverified, id); i < len(unverified) && unverified[i] == id {
								row.Verify = "notSatisfied"
							}
						}
						rep.Devices = append(rep.Devices, row)
					}
				}
			}
		}
		return nil
	})
	// The wave records carry no device lists; drop the batch detail a report reader does not need.
	for i := range rep.Waves {
		rep.Waves[i].Batches = nil
	}
	rep.Hubs = HubSummaries(rep.Devices)
	return rep, err
}
