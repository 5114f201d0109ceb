// Package statestore is where rollout states live: the contract between the engine, which knows what
// a rollout records, and the backends, which know how to keep records durable and exclusive. It holds
// interfaces and the errors both sides speak, and no storage SDK: the engine imports it, the backends
// (statestore/bolt for a directory, statestore/azblob for an Azure Blob container) implement it, and
// one contract suite (statestore/storetest) runs against every backend.
//
// A rollout's records are key/value documents in named buckets. Two kinds of record differ in how
// they are written:
//
//   - Records proper (the rollout's root record, device lists, prior twin values, outcomes, jobs) are
//     written only inside Update, all of one Update or none of it, by the holder of the rollout's
//     lock. A backend that keeps bulk data apart from a small root (the blob backend) writes the bulk
//     of an Update once, before the root that makes it visible.
//   - Siblings (approvals, pauses, promotions) are small records any machine writes at any time,
//     without the lock, while an apply runs: they are what people say to a rollout.
package statestore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backend holds the states of many rollouts, by name.
type Backend interface {
	// Open returns rollout name's records. It creates nothing: the first Update or Lock does.
	Open(ctx context.Context, name string) (Records, error)
	// Names lists the rollouts that have state, sorted.
	Names(ctx context.Context) ([]string, error)
	// String says where the states are, for messages; it never holds a secret.
	String() string
}

// Records is one rollout's durable state.
type Records interface {
	// Exists reports whether the rollout has a root record.
	Exists(ctx context.Context) (bool, error)
	// View runs fn on a consistent snapshot of the records.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn and commits all it wrote, or nothing. Once the Lease taken through Lock is
	// lost, Update fails with an error for which errors.Is(err, ErrLockLost) holds. fn may run more
	// than once (a backend may retry a conflicting commit), so it must not call out.
	Update(ctx context.Context, fn func(Tx) error) error
	// Lock takes the rollout's exclusive writer lock for holder h, or fails with a *LockedError
	// naming the current holder.
	Lock(ctx context.Context, h Holder) (Lease, error)
	// Holder reports who holds the lock, without taking it; held is false when nobody does (a dead
	// holder's record may still be returned).
	Holder(ctx context.Context) (h Holder, held bool, err error)

	// PutSibling writes sibling record key of kind; with create it fails with ErrExists when the
	// record exists already.
	PutSibling(ctx context.Context, kind, key string, data []byte, create bool) error
	// DeleteSibling removes a sibling record; removing one that does not exist is not an error.
	DeleteSibling(ctx context.Context, kind, key string) error
	// Siblings reads every sibling record of kind, by key.
	Siblings(ctx context.Context, kind string) (map[string][]byte, error)

	// Dump reads every record, by bucket and key, from one consistent snapshot (a backend that keeps
	// siblings in buckets of the same kind's name may include them: Copy leaves those out).
	Dump(ctx context.Context) (map[string]map[string][]byte, error)
}

// Tx reads and writes records inside View or Update. Get returns nil for a record that does not
// exist; Put inside View fails.
type Tx interface {
	Get(bucket, key string) ([]byte, error)
	Put(bucket, key string, data []byte) error
}

// Lease is a held writer lock.
type Lease interface {
	// Lost is closed when the lock was lost (a shared lease lapsed or was broken): the holder must
	// stop before its next call to the hub, and its Updates fail from then on.
	Lost() <-chan struct{}
	// Confirm checks with the backend, now, that the lock is still held: a holder calls it right
	// before an action on the hub that a new holder could repeat. It fails with ErrLockLost.
	Confirm(ctx context.Context) error
	// Release gives the lock up.
	Release(ctx context.Context) error
}

// Breaker is a Records whose lock can be broken by someone other than its holder: a shared lease
// left by a dead machine. A directory's lock needs no breaking: the kernel frees it when its holder
// dies.
type Breaker interface {
	// LeaseState describes the lock as the backend sees it ("leased", "available", "expired" ...).
	LeaseState(ctx context.Context) (string, error)
	// Break frees the lock at once, whoever holds it.
	Break(ctx context.Context) error
}

// Holder names the process that holds a rollout's lock.
type Holder struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// LockedError is returned by Lock when another process holds the rollout.
type LockedError struct {
	Name   string
	Holder Holder // zero when the holder could not be read
}

func (e *LockedError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("rollout %s is being applied by another process", e.Name)
	}
	return fmt.Sprintf("rollout %s is being applied by pid %d on %s since %s", e.Name, e.Holder.PID,
		e.Holder.Host, e.Holder.Since.UTC().Format(time.RFC3339))
}

var (
	// ErrNoState is returned when a rollout has no state: it was never applied.
	ErrNoState = errors.New("no state for this rollout")
	// ErrLockLost is returned by Update and Confirm once the holder's lock was lost.
	ErrLockLost = errors.New("the rollout's lock was lost (its lease lapsed or was broken by another holder)")
	// ErrExists is returned by PutSibling with create when the record exists.
	ErrExists = errors.New("record exists")
)

// CheckName refuses a rollout name that could not be a file or blob name of its own.
func CheckName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("invalid rollout name %q", name)
	}
	for _, r := range name {
		if r == '/' || r == '\\' || r < ' ' || r == 0x7f {
			return fmt.Errorf("invalid rollout name %q", name)
		}
	}
	return nil
}

// Copy copies rollout src's records and its sibling records of kinds to dst, which must have no
// state: all records in one Update of dst, then the siblings. The caller holds src's lock, so the
// copy is of a rollout nobody changes meanwhile.
func Copy(ctx context.Context, src, dst Records, kinds []string) error {
	if ok, err := dst.Exists(ctx); err != nil || ok {
		if err == nil {
			err = errors.New("the destination has a state for this rollout already")
		}
		return err
	}
	records, err := src.Dump(ctx)
	if err != nil {
		return err
	}
	for _, k := range kinds {
		delete(records, k)
	}
	err = dst.Update(ctx, func(tx Tx) error {
		for b, m := range records {
			for k, v := range m {
				if err := tx.Put(b, k, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, kind := range kinds {
		sib, err := src.Siblings(ctx, kind)
		if err != nil {
			return err
		}
		for k, v := range sib {
			if err := dst.PutSibling(ctx, kind, k, v, false); err != nil {
				return err
			}
		}
	}
	return nil
}
