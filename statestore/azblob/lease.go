package azblob

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/lease"
	"github.com/google/uuid"
	"github.com/iot-rollout/rollout/statestore"
)

// The lease on a rollout's root: the longest a finite lease may be, renewed at a third of it, so a
// renewal may fail twice before the lease lapses.
const (
	leaseDuration = 60 * time.Second
	renewEvery    = 20 * time.Second
)

// heldLease is this process's lease on a rollout's root, renewed in the background until released.
type heldLease struct {
	r    *rollout
	id   string
	c    *lease.BlobClient
	lost chan struct{}
	once sync.Once
	stop chan struct{}
	done chan struct{}
}

// Lock takes the lease on the rollout's root (creating an empty root first when there is none) and
// writes h into it as the holder. A root leased by another holder is a *statestore.LockedError
// naming the holder its root records.
func (r *rollout) Lock(ctx context.Context, h statestore.Holder) (statestore.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != nil {
		return nil, &statestore.LockedError{Name: r.name, Holder: h}
	}
	if err := r.refresh(ctx); err != nil {
		return nil, err
	}
	if r.etag == "" {
		if err := r.putRoot(ctx, r.doc); err != nil && err != errConflict {
			return nil, err
		}
	}
	id := uuid.NewString()
	c, err := lease.NewBlobClient(r.root, &lease.BlobClientOptions{LeaseID: &id})
	if err != nil {
		return nil, err
	}
	if _, err := c.AcquireLease(ctx, int32(leaseDuration/time.Second), nil); err != nil {
		if bloberror.HasCode(err, bloberror.LeaseAlreadyPresent, bloberror.LeaseIsBreakingAndCannotBeAcquired) {
			_ = r.refresh(ctx)
			held := statestore.Holder{}
			if r.doc.Holder != nil {
				held = *r.doc.Holder
			}
			return nil, &statestore.LockedError{Name: r.name, Holder: held}
		}
		return nil, r.b.failed("lease "+r.name+"/state.json", err)
	}
	l := &heldLease{r: r, id: id, c: c, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	// Read the root again (conditionally) under the lease: the last writer may have been another holder.
	if err := r.refresh(ctx); err != nil {
		_, _ = c.ReleaseLease(ctx, nil)
		return nil, err
	}
	r.lease = l
	h.Since = h.Since.UTC()
	doc := r.doc
	doc.Holder = &h
	if err := r.putRoot(ctx, doc); err != nil {
		r.lease = nil
		_, _ = c.ReleaseLease(ctx, nil)
		return nil, err
	}
	go l.renew()
	return l, nil
}

func (l *heldLease) Lost() <-chan struct{} { return l.lost }

func (l *heldLease) markLost() { l.once.Do(func() { close(l.lost) }) }

// renew keeps the lease until Release. A renewal the service refuses (the lease was broken, or
// lapsed and was taken) loses it at once; renewals that cannot reach the service lose it when the
// lease would have lapsed.
func (l *heldLease) renew() {
	defer close(l.done)
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), renewEvery)
		err := l.confirm(ctx)
		cancel()
		switch {
		case err == nil:
			last = time.Now()
		case lostLease(err) || time.Since(last) >= leaseDuration:
			l.markLost()
			return
		}
	}
}

func (l *heldLease) confirm(ctx context.Context) error {
	_, err := l.c.RenewLease(ctx, nil)
	return err
}

// lostLease reports whether a lease operation's error says the lease is no longer this holder's.
func lostLease(err error) bool {
	return bloberror.HasCode(err, bloberror.LeaseIsBrokenAndCannotBeRenewed, bloberror.LeaseIDMismatchWithLeaseOperation,
		bloberror.LeaseNotPresentWithLeaseOperation, bloberror.LeaseLost, bloberror.BlobNotFound)
}

// Confirm renews the lease now: a holder calls it right before an action another holder could
// repeat, so one whose lease was broken learns it before acting, not at the next renewal.
func (l *heldLease) Confirm(ctx context.Context) error {
	select {
	case <-l.lost:
		return statestore.ErrLockLost
	default:
	}
	err := l.confirm(ctx)
	if lostLease(err) {
		l.markLost()
		return statestore.ErrLockLost
	}
	if err != nil {
		return l.r.b.failed("renew the lease on "+l.r.name+"/state.json", err)
	}
	return nil
}

// Release clears the holder from the root and gives the lease up.
func (l *heldLease) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != l {
		return nil
	}
	doc := r.doc
	doc.Holder = nil
	err := r.putRoot(ctx, doc)
	r.lease = nil
	if _, rerr := l.c.ReleaseLease(ctx, nil); err == nil && rerr != nil && !lostLease(rerr) {
		err = r.b.failed("release the lease on "+r.name+"/state.json", rerr)
	}
	return err
}

// Holder reads the holder the root names and whether its lease is held.
func (r *rollout) Holder(ctx context.Context) (statestore.Holder, bool, error) {
	state, err := r.LeaseState(ctx)
	if err != nil || state == "none" {
		return statestore.Holder{}, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return statestore.Holder{}, false, err
	}
	var h statestore.Holder
	if r.doc.Holder != nil {
		h = *r.doc.Holder
	}
	held := state == string(lease.StateTypeLeased) || state == string(lease.StateTypeBreaking)
	return h, held, nil
}

// LeaseState is the root's lease state as the service reports it (available, leased, expired,
// breaking, broken), or "none" when the rollout has no root.
func (r *rollout) LeaseState(ctx context.Context) (string, error) {
	props, err := r.root.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) || statusIs(err, 404) {
		return "none", nil
	}
	if err != nil {
		return "", r.b.failed("read "+r.name+"/state.json", err)
	}
	if props.LeaseState == nil {
		return string(lease.StateTypeAvailable), nil
	}
	return string(*props.LeaseState), nil
}

// Break ends the lease on the root at once, whoever holds it. The holder's next root write fails on
// the lease, so breaking a live holder stops it without harming the state.
func (r *rollout) Break(ctx context.Context) error {
	c, err := lease.NewBlobClient(r.root, nil)
	if err != nil {
		return err
	}
	_, err = c.BreakLease(ctx, &lease.BlobBreakOptions{BreakPeriod: to(int32(0))})
	if err != nil && !bloberror.HasCode(err, bloberror.LeaseNotPresentWithLeaseOperation) {
		return r.b.failed(fmt.Sprintf("break the lease on %s/state.json", r.name), err)
	}
	return nil
}

var _ statestore.Breaker = (*rollout)(nil)
