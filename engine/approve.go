package engine

import (
	"fmt"
	"strings"
	"time"
)

// Approval records who released a wave's approval gate, when and why.
type Approval struct {
	By     string    `json:"by"`
	Host   string    `json:"host,omitempty"` // the machine it was given on
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	// Early is set when the approval was given before the rollout reached the wave's gate; it releases
	// the gate all the same, and status shows it as given in advance.
	Early bool `json:"early,omitempty"`
	// PlanHash is the plan the approval was given for.
	PlanHash string `json:"planHash,omitempty"`
}

// UnknownWaveError is returned by Approve for a wave the rollout does not have.
type UnknownWaveError struct {
	Rollout, Wave string
	Waves         []string // the rollout's waves, in order
}

func (e *UnknownWaveError) Error() string {
	return fmt.Sprintf("rollout %s has no wave %q (waves: %s)", e.Rollout, e.Wave, strings.Join(e.Waves, ", "))
}

// RefusedError is returned by Approve when the approval would mean nothing: the wave has no approval
// gate, it was approved already, or the rollout is over. Nothing was recorded.
type RefusedError struct{ Why string }

func (e *RefusedError) Error() string { return e.Why }

// CheckApproval decides whether wave of rollout st may be approved now, given the approvals already
// recorded. It returns the approval to record (By, At and Reason are the caller's) marked Early when
// the rollout has not reached the wave's gate yet, or an *UnknownWaveError or *RefusedError.
func CheckApproval(st *State, wave string, approvals map[string]Approval) (Approval, error) {
	wi := -1
	var names []string
	for i, w := range st.Waves {
		names = append(names, w.Name)
		if w.Name == wave {
			wi = i
		}
	}
	if wi < 0 {
		return Approval{}, &UnknownWaveError{Rollout: st.Name, Wave: wave, Waves: names}
	}
	w := st.Waves[wi]
	switch st.Status {
	case StatusDone:
		return Approval{}, &RefusedError{fmt.Sprintf("rollout %s is done: there is no gate left to release", st.Name)}
	case StatusRolledBack, StatusRollingBack:
		return Approval{}, &RefusedError{fmt.Sprintf("rollout %s was rolled back: it does not continue", st.Name)}
	case StatusHalted:
		return Approval{}, &RefusedError{fmt.Sprintf("rollout %s halted (%s): it has no gate to release until its failures are accepted (rollout resume %s --accept REASON)", st.Name, st.Reason, st.Name)}
	}
	if !w.Gated {
		return Approval{}, &RefusedError{fmt.Sprintf("wave %s of rollout %s has no approval gate (its plan does not say approval: required)",
			wave, st.Name)}
	}
	if a, ok := approvals[wave]; ok {
		return Approval{}, &RefusedError{fmt.Sprintf("wave %s of rollout %s was approved already, by %s at %s",
			wave, st.Name, a.By, a.At.UTC().Format(time.RFC3339))}
	}
	if w.Status != StatusPending {
		return Approval{}, &RefusedError{fmt.Sprintf("wave %s of rollout %s is %s: its gate is behind it", wave, st.Name, w.Status)}
	}
	early := false
	for _, e := range st.Waves[:wi] {
		if e.Status != StatusDone {
			early = true
		}
	}
	return Approval{Early: early, PlanHash: st.PlanHash}, nil
}

// Approve releases the approval gate of wave in the rollout of store s, recording a (its By, At and
// Reason); see CheckApproval for what it refuses. It works while an apply runs, from any machine that
// reaches the state: an approval is a sibling record, written without the rollout's lock.
func Approve(s *Store, wave string, a Approval) (Approval, error) {
	st, err := s.Load()
	if err != nil {
		return Approval{}, err
	}
	approvals, err := Approvals(s)
	if err != nil {
		return Approval{}, err
	}
	rec, err := CheckApproval(st, wave, approvals)
	if err != nil {
		return Approval{}, err
	}
	rec.By, rec.Host, rec.At, rec.Reason = a.By, a.Host, a.At.UTC(), a.Reason
	return rec, s.putSibling(kindApprovals, wave, rec)
}

// Approvals reads the released approval gates of the rollout in s, by wave name.
func Approvals(s *Store) (map[string]Approval, error) {
	return siblings[Approval](s, kindApprovals)
}
