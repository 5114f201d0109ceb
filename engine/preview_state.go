package engine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/plan"
)

// state reads the rollout's state and decides what apply would do next.
// A rollout never applied previews as new (nil).
func (pv *previewer) state() (*State, error) {
	st, err := pv.Store.Load()
	if errors.Is(err, ErrNoState) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sp := &StatePreview{Status: st.Status, Reason: st.Reason}
	pv.out.State = sp
	if st.PlanHash != pv.p.Hash || len(st.Waves) != len(pv.p.Waves) {
		changes := plan.Changes(st.PlanParts, plan.Parts(pv.p))
		if st.Status == StatusRunning && !st.anyJob() {
			sp.Summary = fmt.Sprintf("the plan was edited before the rollout created a job (%s): apply starts the rollout over with it",
				strings.Join(changes, ", "))
			return st, nil
		}
		sp.PlanChanged = true
		sp.Summary = (&PlanChangedError{Name: st.Name, Was: st.PlanHash, Now: pv.p.Hash, Changes: changes, Known: st.PlanParts != nil}).Error()
		return st, nil
	}
	step := NextWith(pv.p, st, readSignals(pv.Store, st, pv.p.Hash), pv.Now)
	sp.Next, sp.Until = step.Kind, step.Until
	name := ""
	if step.Wave >= 0 && step.Wave < len(st.Waves) {
		name = st.Waves[step.Wave].Name
	}
	switch step.Kind {
	case StepDone, StepHalted, StepRolledBack, StepRollback:
	default:
		sp.NextWave = name
		if step.Kind == StepBatch {
			sp.NextBatch = step.Batch + 1
		}
	}
	sp.Summary = describeStep(st, step, name)
	return st, nil
}

func describeStep(st *State, s Step, wave string) string {
	switch s.Kind {
	case StepDone:
		return "the rollout is done; apply has nothing to do"
	case StepHalted:
		return "the rollout halted (" + st.Reason + "); apply does nothing more, rollback undoes it"
	case StepRolledBack:
		return "the rollout was rolled back; apply does nothing more"
	case StepRollback:
		return "apply would continue the rollback (" + st.Reason + ")"
	case StepWaitApproval:
		return fmt.Sprintf("apply would wait for approval of wave %s (rollout approve %s --wave %s)", wave, st.Name, wave)
	case StepWaitSchedule:
		return fmt.Sprintf("apply would wait for a schedule window, until %s, to start wave %s", s.Until.UTC().Format(time.RFC3339), wave)
	case StepResolve:
		return fmt.Sprintf("apply would start wave %s: resolve and store its devices", wave)
	case StepBatch:
		return fmt.Sprintf("apply would run batch %d of wave %s", s.Batch+1, wave)
	case StepWaveGate:
		return fmt.Sprintf("apply would judge wave %s's success gate and start its bake", wave)
	case StepVerify:
		return fmt.Sprintf("apply would poll wave %s's verify condition", wave)
	case StepWaitBake:
		return fmt.Sprintf("apply would wait for wave %s's bake, until %s", wave, s.Until.UTC().Format(time.RFC3339))
	case StepFinishWave:
		return fmt.Sprintf("apply would finish wave %s and go on to the next", wave)
	case StepPaused:
		return fmt.Sprintf("the rollout is paused before wave %s; apply waits until rollout resume %s", wave, st.Name)
	}
	return string(s.Kind)
}
