package engine

import "context"

// ahead is work done in the background while a batch's jobs run: a later batch's snapshot, or, once
// the wave's batches are snapshotted, the next wave's devices (batch -1) or its first batch's snapshot. It only reads
// the hub; the runner stores its result when it finished.
type ahead struct {
	wave, batch int
	cancel      context.CancelFunc
	done        chan struct{}
	ids         []string
	priors      map[string][]byte
	err         error
}

func (a *ahead) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// doneChan is nil (never ready) for no task.
func (a *ahead) doneChan() <-chan struct{} {
	if a == nil {
		return nil
	}
	return a.done
}

// abandon stops an unfinished task and waits for it; its result is dropped.
func (a *ahead) abandon() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}

// startAhead starts the next piece of background work, or returns nil when there is none. A wave with
// bake or verify, and a next wave behind an approval or a closed schedule window, are not run ahead:
// the hub waits for them anyway, and a wave's devices are best resolved close to its start.
func (r *runner) startAhead(ctx context.Context, wi, bi int) *ahead {
	w, pw := &r.st.Waves[wi], r.p.Waves[wi]
	var a *ahead
	// Later batches of this wave first, in order: snapshots are the slowest preparation on a fast hub,
	// so they run back to back while jobs run.
	for j := bi + 1; j < len(w.Batches) && pw.Action.TwinUpdate != nil; j++ {
		if !w.Batches[j].Snapshotted {
			a = &ahead{wave: wi, batch: j}
			break
		}
	}
	switch {
	case a != nil:
	case wi+1 < len(r.st.Waves) && pw.Bake == 0 && pw.Verify == nil:
		ni := wi + 1
		nw, npw := &r.st.Waves[ni], r.p.Waves[ni]
		if nw.Status != StatusPending || npw.Approval {
			return nil
		}
		if open, _ := ScheduleOpen(r.p.Schedule, r.now()); !open {
			return nil
		}
		switch {
		case !nw.Resolved:
			a = &ahead{wave: ni, batch: -1}
		case npw.Action.TwinUpdate != nil && len(nw.Batches) > 0 && !nw.Batches[0].Snapshotted:
			a = &ahead{wave: ni, batch: 0}
		}
	}
	if a == nil {
		return nil
	}
	actx, cancel := context.WithCancel(ctx)
	a.cancel, a.done = cancel, make(chan struct{})
	if a.batch < 0 {
		q, taken, err := r.resolveSets(a.wave)
		if err != nil {
			a.err = err
			close(a.done)
			return a
		}
		pw := r.p.Waves[a.wave]
		go func() {
			defer close(a.done)
			a.ids, a.err = r.queryWave(actx, pw.Name, q, taken.has, pw.Percent)
		}()
		return a
	}
	ids, err := r.waveDevices(a.wave)
	if err != nil {
		a.err = err
		close(a.done)
		return a
	}
	b := r.st.Waves[a.wave].Batches[a.batch]
	ids = ids[b.Start:b.End]
	tu := r.p.Waves[a.wave].Action.TwinUpdate
	go func() {
		defer close(a.done)
		a.priors, a.err = r.capture(actx, ids, tu)
	}()
	return a
}

// applyAhead stores the result of a finished background task.
func (r *runner) applyAhead(a *ahead) error {
	if a.err != nil {
		return a.err
	}
	if a.batch < 0 {
		return r.storeResolved(a.wave, a.ids)
	}
	return r.storeSnapshot(a.wave, a.batch, a.priors)
}
