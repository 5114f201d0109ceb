package engine

import (
	"context"
	"fmt"
	"time"
)

// Control records a person's word to a rollout beside approvals: a pause or a promotion.
type Control struct {
	By     string    `json:"by"`
	Host   string    `json:"host,omitempty"` // the machine it was said on
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Pause asks the rollout of store s to hold at its next safe point (a running apply waits there, and
// --no-wait runs exit 10 with reason paused) until Resume. It works while an apply runs. A rollout
// that is over, or paused already, is refused with a *RefusedError.
func Pause(s *Store, c Control) error {
	st, err := s.Load()
	if err != nil {
		return err
	}
	if err := open(st); err != nil {
		return err
	}
	if p, ok, err := Paused(s); err != nil || ok {
		if err == nil {
			err = &RefusedError{fmt.Sprintf("rollout %s is paused already, by %s at %s", st.Name, p.By, p.At.UTC().Format(time.RFC3339))}
		}
		return err
	}
	c.At = c.At.UTC()
	return s.putSibling(kindControls, keyPause, c)
}

// Resume lifts a pause; a rollout that is not paused is refused with a *RefusedError.
func Resume(s *Store) error {
	st, err := s.Load()
	if err != nil {
		return err
	}
	if _, ok, err := Paused(s); err != nil || !ok {
		if err == nil {
			err = &RefusedError{fmt.Sprintf("rollout %s is not paused", st.Name)}
		}
		return err
	}
	return s.rec.DeleteSibling(context.Background(), kindControls, keyPause)
}

// Promote releases the current wave's approval gate, or ends its bake early (its verify must still
// pass), and returns the wave. A rollout that is over, or has no wave waiting at a gate or baking, is
// refused with a *RefusedError.
func Promote(s *Store, c Control) (wave string, err error) {
	st, err := s.Load()
	if err != nil {
		return "", err
	}
	if err := open(st); err != nil {
		return "", err
	}
	w := st.Waves[firstOpen(st)]
	gate := w.Status == StatusPending && w.Gated
	if !gate && w.Status != StatusBaking {
		return "", &RefusedError{fmt.Sprintf("wave %s of rollout %s is %s: there is no gate or bake to promote", w.Name, st.Name, w.Status)}
	}
	c.At = c.At.UTC()
	return w.Name, s.putSibling(kindControls, promoteKey(w.Name), c)
}

// open refuses a rollout that is over.
func open(st *State) error {
	switch st.Status {
	case StatusDone, StatusHalted, StatusRolledBack, StatusRollingBack:
		return &RefusedError{fmt.Sprintf("rollout %s is %s", st.Name, st.Status)}
	}
	return nil
}

const keyPause = "pause"

func promoteKey(wave string) string { return "promote/" + wave }

// signals reads what people said to the rollout (see readSignals).
func (r *runner) signals() Signals { return readSignals(r.Store, r.st, r.p.Hash) }

// readSignals reads what people said to rollout st of the plan with hash planHash from its store s:
// approvals given for this plan (one for another version of it does not count), its pause,
// promotions. Apply and the preview decide with the same signals. A state error reads as none: gates
// stay closed.
func readSignals(s *Store, st *State, planHash string) Signals {
	var sig Signals
	approved, promoted := map[string]bool{}, map[string]bool{}
	approvals, _ := Approvals(s)
	for w, a := range approvals {
		approved[w] = a.PlanHash == "" || a.PlanHash == planHash
	}
	controls, _ := siblings[Control](s, kindControls)
	_, sig.Paused = controls[keyPause]
	for _, w := range st.Waves {
		_, promoted[w.Name] = controls[promoteKey(w.Name)]
	}
	sig.Accepted = pendingAcceptance(s, st) != nil
	sig.Approved = func(w string) bool { return approved[w] }
	sig.Promoted = func(w string) bool { return promoted[w] }
	return sig
}

// Paused reads the pause of the rollout in s, if any.
func Paused(s *Store) (c Control, ok bool, err error) {
	controls, err := siblings[Control](s, kindControls)
	c, ok = controls[keyPause]
	return c, ok, err
}
