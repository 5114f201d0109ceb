package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/plan"
	"github.com/iot-rollout/rollout/query"
)

// failWave records a failed gate of wave wi; the rollout halts or rolls back as the plan says.
func (r *runner) failWave(wi int, reason string) error {
	return r.commit(r.st.FailWave(wi, reason, r.p.OnFailure == plan.Halt))
}

// waveGate judges wave wi at its end, over all its devices.
func (r *runner) waveGate(wi int) error {
	w := &r.st.Waves[wi]
	c := w.Judged()
	if w.Accepted.Targeted > 0 && c.Targeted == 0 {
		// Every device of the wave was in batches whose failures were accepted: nothing is left to judge.
		return r.commit(r.st.PassWave(wi, Verdict{Pass: true, Reason: "every device was judged before an accepted halt"}, r.now()))
	}
	v := JudgeWave(r.p.Waves[wi], query.Format(r.p.Condition(wi)), c)
	if !v.Pass {
		return r.commit(r.st.FailWave(wi, v.Reason, v.Halt || r.p.OnFailure == plan.Halt))
	}
	return r.commit(r.st.PassWave(wi, v, r.now()))
}

func (r *runner) verifyPoll(wi int) time.Duration {
	if r.VerifyPoll > 0 {
		return r.VerifyPoll
	}
	// Ten reads within the verify window, between 200ms and 5s apart; and since one read costs a query
	// per chunk of the wave's device list, at most a quarter of the hub's query budget.
	d := r.p.Waves[wi].Verify.Within / 10
	d = max(200*time.Millisecond, min(d, 5*time.Second))
	chunks := float64(r.st.Waves[wi].DeviceCount)/500 + 1
	if qpm := r.Quotas.QueriesPerMinute; qpm > 0 && !math.IsInf(qpm, 1) {
		if need := time.Duration(chunks * 4 * 60 / qpm * float64(time.Second)); need > d {
			d = need
		}
	}
	return d
}

// verify reads the share of a wave's devices that satisfy the verify condition, one COUNT query per
// chunk of the device list, and judges it.
func (r *runner) verify(ctx context.Context, wi int) (waiting bool, err error) {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	ids, err := r.waveDevices(wi)
	if err != nil {
		return false, err
	}
	matching := 0
	err = r.queryByID(ctx, "SELECT COUNT() AS n FROM devices WHERE ("+pw.Verify.Condition+") AND ", ids, 1,
		func(raw json.RawMessage) error {
			n, err := countRow(raw)
			matching += n
			return err
		})
	if err != nil {
		return false, fmt.Errorf("verify wave %s: %w", w.Name, err)
	}
	w.VerifyReads++
	w.VerifyRate = 1
	if len(ids) > 0 {
		w.VerifyRate = float64(matching) / float64(len(ids))
	}
	r.emit(Event{Type: EventVerify, Wave: wi, Rate: w.VerifyRate, Done: matching, Devices: len(ids)})
	m, total, unreachable, err := r.verifyReachable(ctx, wi, ids, matching)
	if err != nil || unreachable != "" {
		return false, err
	}
	var judged VerifyState
	judged, w.VerifyMetSince = JudgeVerifyHeld(pw.Verify, m, total, w.VerifyReads, w.BakeStart, w.VerifyMetSince, r.now())
	switch judged {
	case VerifyPass:
		r.st.PassVerify(wi)
		return false, r.save()
	case VerifyFail:
		missing, err := r.unverified(ctx, wi, ids)
		if err != nil {
			return false, err
		}
		held := ""
		if pw.Verify.Hold > 0 {
			held = fmt.Sprintf(", or did not stay at it for hold %s", pw.Verify.Hold)
		}
		return false, r.failWave(wi, fmt.Sprintf("verify: %s of devices satisfy %q after %s, below minRate %s%s; not satisfied: %s",
			pct(w.VerifyRate), pw.Verify.Condition, pw.Verify.Within, pct(pw.Verify.MinRate), held, sample(missing, 5)))
	}
	return true, r.save()
}

// verifyReachable judges, for a twin update whose verify time is up and whose rate is not met, the
// wave's devices that are disconnected without satisfying the condition as unreachable, apart from
// failures (see VerifyReachable): it returns the counts to judge the rate on or, when they pass the
// wave's maxUnreachable, fails the wave and returns its reason. Before within, or without
// maxUnreachable, it reads nothing and returns matching of all ids.
func (r *runner) verifyReachable(ctx context.Context, wi int, ids []string, matching int) (m, total int, failed string, err error) {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	limit, v := pw.Success.MaxUnreachable, pw.Verify
	if limit == nil || r.st.waveKind(wi) != KindTwinUpdate || len(ids) == 0 || w.VerifyReads < 2 ||
		float64(matching)/float64(len(ids))+1e-9 >= v.MinRate || r.now().Before(w.BakeStart.Add(v.Within)) {
		return matching, len(ids), "", nil
	}
	const disconnected = "connectionState = 'Disconnected' AND "
	all, err := r.countByID(ctx, disconnected, ids)
	if err != nil {
		return 0, 0, "", fmt.Errorf("verify wave %s: %w", w.Name, err)
	}
	satisfied, err := r.countByID(ctx, "("+v.Condition+") AND "+disconnected, ids)
	if err != nil {
		return 0, 0, "", fmt.Errorf("verify wave %s: %w", w.Name, err)
	}
	unreachable := max(0, all-satisfied)
	m, total, exceeded := VerifyReachable(limit, matching, len(ids), unreachable)
	if !exceeded {
		return m, total, "", nil
	}
	failed = fmt.Sprintf("verify: %s disconnected without satisfying %q after %s, more than maxUnreachable %s",
		plural(unreachable, "device"), v.Condition, v.Within, limit)
	return 0, 0, failed, r.failWave(wi, failed)
}

// countByID sums `SELECT COUNT() ... WHERE <where>deviceId IN [...]` over ids.
func (r *runner) countByID(ctx context.Context, where string, ids []string) (int, error) {
	total := 0
	err := r.queryByID(ctx, "SELECT COUNT() AS n FROM devices WHERE "+where, ids, 1, func(raw json.RawMessage) error {
		n, err := countRow(raw)
		total += n
		return err
	})
	return total, err
}

// unverified finds and stores, sorted, the devices among ids that do not satisfy wave wi's verify
// condition, for the report: the wave's devices less those a query of the condition returns (a NOT
// of the condition would miss devices that lack its properties).
func (r *runner) unverified(ctx context.Context, wi int, ids []string) ([]string, error) {
	satisfied := map[string]bool{}
	err := r.queryByID(ctx, "SELECT deviceId FROM devices WHERE ("+r.p.Waves[wi].Verify.Condition+") AND ", ids, 1,
		func(raw json.RawMessage) error {
			id, err := rowID(raw)
			satisfied[id] = true
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("verify wave %s: %w", r.st.Waves[wi].Name, err)
	}
	missing := []string{}
	for _, id := range ids {
		if !satisfied[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing) // the report searches them; a wave over several hubs is not stored sorted
	return missing, r.Store.Update(func(tx *Tx) error { return tx.PutUnverified(wi, missing) })
}

// sample lists up to n of ids, and how many more there are.
func sample(ids []string, n int) string {
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more (all in the report)", strings.Join(ids[:n], ", "), len(ids)-n)
}

// countRow reads the single number of an aggregate row such as {"n": 5}.
func countRow(raw json.RawMessage) (int, error) {
	var row map[string]json.Number
	if err := json.Unmarshal(raw, &row); err != nil || len(row) != 1 {
		return 0, fmt.Errorf("unexpected count row %s", raw)
	}
	for _, v := range row {
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("unexpected count row %s", raw)
		}
		return int(n), nil
	}
	return 0, nil
}
