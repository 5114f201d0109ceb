package engine

import (
	"fmt"
	"time"
)

// Acceptance records that a person accepted the failures behind a halt (`rollout resume NAME --accept
// REASON`): the rollout continues past the gate that failed, and from then on its gates and its
// budget count only what comes after.
type Acceptance struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Wave   string    `json:"wave"` // the wave whose gate failed
	Halt   string    `json:"halt"` // why the rollout halted
	// Failures is how many failed, timed-out and method-error devices were accepted: those over the
	// rollout since the previous acceptance, when the rollout halted.
	Failures int `json:"failures"`
	// Totals are the rollout's counts when the acceptance was applied; the budget counts from them.
	Totals Counts `json:"totals,omitzero"`
}

const kindAcceptances = "acceptances" // "NNN", the acceptance of the rollout's NNNth halt → Acceptance

func acceptKey(n int) string { return fmt.Sprintf("%03d", n) }

// Accept records the acceptance of the halt the rollout of store s stands at: who (a.By, a.At) and
// why (a.Reason, required). The next apply applies it: the rollout continues from the next batch of
// the wave whose batch gate or budget failed (the failed batch counts as done), from the bake and
// verify of a wave whose end gate failed, or from the end of the bake of a wave whose verify failed;
// its gates and budget then count only what comes after. It works while an apply runs (an acceptance
// is a sibling record, written without the rollout's lock). A rollout that is not halted, or whose
// halt was accepted already, is refused with a *RefusedError. It returns the acceptance recorded.
func Accept(s *Store, a Acceptance) (Acceptance, error) {
	st, err := s.Load()
	if err != nil {
		return Acceptance{}, err
	}
	if st.Status != StatusHalted {
		return Acceptance{}, &RefusedError{fmt.Sprintf("rollout %s is %s: only a halted rollout's failures can be accepted", st.Name, st.Status)}
	}
	if a.Reason == "" {
		return Acceptance{}, &RefusedError{"say why the failures are accepted: --accept REASON"}
	}
	accepted, err := siblings[Acceptance](s, kindAcceptances)
	if err != nil {
		return Acceptance{}, err
	}
	if prev, ok := accepted[acceptKey(len(st.Accepted))]; ok {
		return Acceptance{}, &RefusedError{fmt.Sprintf("the halt of rollout %s was accepted already, by %s at %s; the next apply continues it",
			st.Name, prev.By, prev.At.UTC().Format(time.RFC3339))}
	}
	wi := st.failedWave()
	t := st.Totals().Sub(st.acceptedTotals())
	a.At, a.Halt, a.Failures = a.At.UTC(), st.Reason, t.Failed+t.TimedOut
	if wi >= 0 {
		a.Wave = st.Waves[wi].Name
	}
	return a, s.putSibling(kindAcceptances, acceptKey(len(st.Accepted)), a)
}

// pendingAcceptance reads the acceptance of rollout st's current halt, if one was given.
func pendingAcceptance(s *Store, st *State) *Acceptance {
	if st.Status != StatusHalted {
		return nil
	}
	accepted, _ := siblings[Acceptance](s, kindAcceptances)
	if a, ok := accepted[acceptKey(len(st.Accepted))]; ok {
		return &a
	}
	return nil
}

// failedWave is the index of the wave whose gate failed (-1: none).
func (st *State) failedWave() int {
	for i, w := range st.Waves {
		if w.Status == StatusFailed {
			return i
		}
	}
	return -1
}

// acceptedTotals are the rollout's counts at its last accepted halt: the budget counts from there.
func (st *State) acceptedTotals() Counts {
	if n := len(st.Accepted); n > 0 {
		return st.Accepted[n-1].Totals
	}
	return Counts{}
}
