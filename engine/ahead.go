package engine

import "context"

// ahead is a preparation (see Prepare) running in the background while a batch's jobs run. It only
// reads the hub; the runner stores its result when it finished.
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

// startAhead starts the preparation prep (see PrepareAhead) in the background; nil starts nothing.
func (r *runner) startAhead(ctx context.Context, prep *Prepare) *ahead {
	if prep == nil {
		return nil
	}
	a := &ahead{wave: prep.Wave, batch: prep.Batch}
	actx, cancel := context.WithCancel(ctx)
	a.cancel, a.done = cancel, make(chan struct{})
	if a.batch < 0 {
		rv := r.resolver()
		qs, err := rv.queries(a.wave)
		if err != nil {
			a.err = err
			close(a.done)
			return a
		}
		go func() {
			defer close(a.done)
			a.ids, a.err = rv.listAll(actx, a.wave, qs)
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

// awaitAhead waits for the preparation an earlier batch left running, when it prepares batch bi of
// wave wi (bi -1: the wave's devices), and stores its result, so that what it reads is not read twice.
func (r *runner) awaitAhead(wi, bi int) error {
	a := r.ahead
	if a == nil || a.wave != wi || a.batch != bi {
		return nil
	}
	r.ahead = nil
	<-a.done
	return r.applyAhead(a)
}

// dropAhead stops a preparation left running when the run returns; its result is dropped, and the
// next run prepares again.
func (r *runner) dropAhead() {
	r.ahead.abandon()
	r.ahead = nil
}
