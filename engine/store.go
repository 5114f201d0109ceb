package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/iot-rollout/rollout/statestore"
)

// The lock and state errors are statestore's: the engine and every backend speak them.
type (
	// Holder names the process that holds a rollout's lock.
	Holder = statestore.Holder
	// LockedError is returned by Store.Lock when another process holds the rollout.
	LockedError = statestore.LockedError
)

var (
	// ErrNoState is returned by Store.Load when the rollout has never been applied.
	ErrNoState = statestore.ErrNoState
	// ErrLockLost is returned by a save once the rollout's lock was lost.
	ErrLockLost = statestore.ErrLockLost
)

// Buckets of a rollout's records (see statestore: records proper, written under the lock).
const (
	bucketState     = "state"     // "state" → State (device lists written before bucketLists too)
	bucketLists     = "lists"     // "devices/NNNNNN", "unverified/NNNNNN", "rollback/W/B" → []string
	bucketSnapshots = "snapshots" // device id → Prior
	bucketOutcomes  = "outcomes"  // device id → DeviceOutcome
	bucketJobs      = "jobs"      // "WWWWWW/BBBBBB/f|r/PPPPPP" → Job (forward or rollback)
	keyState        = "state"
)

// Kinds of sibling records: what people say to a rollout, written without its lock.
const (
	kindApprovals = "approvals" // wave name → Approval
	kindControls  = "controls"  // "pause", "promote/WAVE" → Control
)

// Store is one rollout's durable state as the engine sees it: typed records over a backend's
// statestore.Records (a bbolt file in a directory, or blobs in an Azure container). The engine
// imports no storage SDK; the backend decides how a record is kept, the Store what is in it.
type Store struct {
	name string
	rec  statestore.Records

	mu sync.Mutex
	// written holds the job records this Store last committed, by key: a save writes only the jobs
	// that differ, so its cost does not grow with the jobs the rollout already has.
	written map[jobRef]Job
	lease   statestore.Lease // held by Lock
}

// NewStore returns the store of rollout name kept in rec.
func NewStore(name string, rec statestore.Records) *Store {
	return &Store{name: name, rec: rec, written: map[jobRef]Job{}}
}

// OpenStore returns the store of rollout name in backend b.
func OpenStore(ctx context.Context, b statestore.Backend, name string) (*Store, error) {
	if err := statestore.CheckName(name); err != nil {
		return nil, err
	}
	rec, err := b.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return NewStore(name, rec), nil
}

// jobRef names a job record: its wave, batch, kind ('f' forward, 'r' rollback) and part.
type jobRef struct {
	wave, batch int
	kind        byte
	part        int
}

func (k jobRef) key() string {
	return fmt.Sprintf("%06d/%06d/%c/%06d", k.wave, k.batch, k.kind, k.part)
}

// Name is the rollout's name.
func (s *Store) Name() string { return s.name }

// Records is the backend's view of the rollout.
func (s *Store) Records() statestore.Records { return s.rec }

// Exists reports whether the rollout has state.
func (s *Store) Exists() (bool, error) { return s.rec.Exists(context.Background()) }

// Tx is a transaction on a rollout's state.
type Tx struct {
	kv      statestore.Tx
	s       *Store
	pending map[jobRef]Job // job records this transaction wrote
}

// Update runs fn in one write transaction: everything fn wrote is committed together, or nothing is.
func (s *Store) Update(fn func(*Tx) error) error {
	var t *Tx
	err := s.rec.Update(context.Background(), func(kv statestore.Tx) error {
		t = &Tx{kv: kv, s: s, pending: map[jobRef]Job{}}
		return fn(t)
	})
	if err == nil && t != nil {
		s.mu.Lock()
		maps.Copy(s.written, t.pending)
		s.mu.Unlock()
	}
	return err
}

// View runs fn in a read transaction. It returns ErrNoState when the rollout has no state.
func (s *Store) View(fn func(*Tx) error) error {
	return s.rec.View(context.Background(), func(kv statestore.Tx) error {
		return fn(&Tx{kv: kv, s: s})
	})
}

// Load reads the rollout's State; ErrNoState when it was never applied.
func (s *Store) Load() (*State, error) {
	var st *State
	err := s.View(func(tx *Tx) error {
		var err error
		st, err = tx.State()
		return err
	})
	return st, err
}

// Lock takes the rollout's exclusive lock for this process (a *LockedError names another holder).
// The returned function releases it.
func (s *Store) Lock(now time.Time) (unlock func(), err error) {
	l, err := s.rec.Lock(context.Background(), thisHolder(now))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.lease = l
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.lease = nil
		s.mu.Unlock()
		_ = l.Release(context.Background())
	}, nil
}

// fence checks, right before an action on the hub that another holder could repeat, that this
// process still holds the rollout's lock: a holder whose shared lease was broken stops here.
func (s *Store) fence(ctx context.Context) error {
	s.mu.Lock()
	l := s.lease
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	select {
	case <-l.Lost():
		return ErrLockLost
	default:
	}
	return l.Confirm(ctx)
}

// lost is closed when this process's lock is lost; nil (never ready) when it holds none.
func (s *Store) lost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == nil {
		return nil
	}
	return s.lease.Lost()
}

// Holder reports who holds the rollout's lock, without taking it.
func (s *Store) Holder() (h Holder, held bool, err error) {
	return s.rec.Holder(context.Background())
}

func (t *Tx) getJSON(bucket, key string, v any) (bool, error) {
	data, err := t.kv.Get(bucket, key)
	if err != nil || data == nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("corrupt state record %s/%s: %w", bucket, key, err)
	}
	return true, nil
}

func (t *Tx) putJSON(bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.kv.Put(bucket, key, data)
}

// State reads the rollout record; ErrNoState when there is none.
func (t *Tx) State() (*State, error) {
	var st State
	ok, err := t.getJSON(bucketState, keyState, &st)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoState
	}
	for wi := range st.Waves {
		for bi := range st.Waves[wi].Batches {
			b := &st.Waves[wi].Batches[bi]
			// A record written before jobs were records of their own holds them inline.
			if b.JobCount > 0 {
				if b.Jobs, err = t.readJobs(wi, bi, 'f', b.JobCount); err != nil {
					return nil, err
				}
			}
			if b.RollbackJobCount > 0 {
				if b.RollbackJobs, err = t.readJobs(wi, bi, 'r', b.RollbackJobCount); err != nil {
					return nil, err
				}
			}
			b.JobCount, b.RollbackJobCount = 0, 0
		}
	}
	return &st, nil
}

// PutState writes the rollout record. The jobs of its batches are records of their own, and only
// those that changed since this Store last wrote them are written: a save costs what changed, not
// the size of the rollout.
func (t *Tx) PutState(st *State) error {
	root := *st
	root.Waves = make([]Wave, len(st.Waves))
	for wi, w := range st.Waves {
		w.Batches = slices.Clone(w.Batches)
		for bi := range w.Batches {
			b := &w.Batches[bi]
			if err := t.putJobs(wi, bi, 'f', b.Jobs); err != nil {
				return err
			}
			if err := t.putJobs(wi, bi, 'r', b.RollbackJobs); err != nil {
				return err
			}
			b.JobCount, b.RollbackJobCount = len(b.Jobs), len(b.RollbackJobs)
			b.Jobs, b.RollbackJobs = nil, nil
		}
		root.Waves[wi] = w
	}
	return t.putJSON(bucketState, keyState, &root)
}

// putJobs writes the jobs of a batch (kind 'f' forward, 'r' rollback) that differ from what this
// Store last committed.
func (t *Tx) putJobs(wave, batch int, kind byte, jobs []Job) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for p, j := range jobs {
		ref := jobRef{wave, batch, kind, p}
		if w, ok := t.s.written[ref]; ok && w == j {
			continue
		}
		if err := t.putJSON(bucketJobs, ref.key(), j); err != nil {
			return err
		}
		t.pending[ref] = j
	}
	return nil
}

// readJobs reads n job records of a batch.
func (t *Tx) readJobs(wave, batch int, kind byte, n int) ([]Job, error) {
	jobs := make([]Job, n)
	for p := range jobs {
		key := jobRef{wave, batch, kind, p}.key()
		ok, err := t.getJSON(bucketJobs, key, &jobs[p])
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("state: job record %s is missing", key)
		}
	}
	return jobs, nil
}

// getList reads a device list: from its own bucket, where lists live apart from the small, often
// rewritten root (a wave's list is megabytes), or from the state bucket of a file written before.
func (t *Tx) getList(key string, ids *[]string) error {
	if ok, err := t.getJSON(bucketLists, key, ids); ok || err != nil {
		return err
	}
	_, err := t.getJSON(bucketState, key, ids)
	return err
}

func (t *Tx) list(key string) ([]string, error) {
	var ids []string
	err := t.getList(key, &ids)
	return ids, err
}

func devicesKey(wave int) string { return fmt.Sprintf("devices/%06d", wave) }

// Devices reads a wave's resolved devices (nil when not resolved).
func (t *Tx) Devices(wave int) ([]string, error) { return t.list(devicesKey(wave)) }

// PutDevices stores a wave's resolved devices.
func (t *Tx) PutDevices(wave int, ids []string) error {
	return t.putJSON(bucketLists, devicesKey(wave), ids)
}

func unverifiedKey(wave int) string { return fmt.Sprintf("unverified/%06d", wave) }

// Unverified reads the devices of a wave that did not satisfy its failed verify (nil when verify did
// not fail).
func (t *Tx) Unverified(wave int) ([]string, error) { return t.list(unverifiedKey(wave)) }

// PutUnverified stores the devices of a wave that did not satisfy its verify when it failed.
func (t *Tx) PutUnverified(wave int, ids []string) error {
	return t.putJSON(bucketLists, unverifiedKey(wave), ids)
}

// Snapshot reads a device's captured prior values; ok is false when none was captured.
func (t *Tx) Snapshot(id string) (p Prior, ok bool, err error) {
	ok, err = t.getJSON(bucketSnapshots, id, &p)
	return p, ok, err
}

// putSnapshotJSON stores a device's prior values, encoded (see encodedPrior). A prior already stored
// is kept: the first capture is the device's value before the rollout, and a resumed run must not
// overwrite it with a changed twin.
func (t *Tx) putSnapshotJSON(id string, data []byte) error {
	if old, err := t.kv.Get(bucketSnapshots, id); err != nil || old != nil {
		return err
	}
	return t.kv.Put(bucketSnapshots, id, data)
}

// Outcome reads a device's recorded outcome.
func (t *Tx) Outcome(id string) (o DeviceOutcome, ok bool, err error) {
	ok, err = t.getJSON(bucketOutcomes, id, &o)
	return o, ok, err
}

// PutOutcome stores a device's outcome.
func (t *Tx) PutOutcome(id string, o DeviceOutcome) error {
	return t.putJSON(bucketOutcomes, id, o)
}

func conflictsKey(wave, batch int) string { return fmt.Sprintf("conflicts/%06d/%06d", wave, batch) }

// Conflicts reads the devices a rollback of batch batch of wave wave left alone, sorted.
func (t *Tx) Conflicts(wave, batch int) ([]string, error) { return t.list(conflictsKey(wave, batch)) }

// PutConflicts stores the devices a rollback of a batch left alone because someone changed them.
func (t *Tx) PutConflicts(wave, batch int, ids []string) error {
	return t.putJSON(bucketLists, conflictsKey(wave, batch), ids)
}

func rollbackDevicesKey(wave, batch int) string {
	return fmt.Sprintf("rollback/%06d/%06d", wave, batch)
}

// RollbackDevices reads the devices a batch's compensating method jobs target.
func (t *Tx) RollbackDevices(wave, batch int) ([]string, error) {
	return t.list(rollbackDevicesKey(wave, batch))
}

// PutRollbackDevices stores the devices a batch's compensating method jobs target.
func (t *Tx) PutRollbackDevices(wave, batch int, ids []string) error {
	return t.putJSON(bucketLists, rollbackDevicesKey(wave, batch), ids)
}

// siblings reads the sibling records of kind, decoded into T, by key.
func siblings[T any](s *Store, kind string) (map[string]T, error) {
	raw, err := s.rec.Siblings(context.Background(), kind)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(raw))
	for k, data := range raw {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("corrupt state record %s/%s: %w", kind, k, err)
		}
		out[k] = v
	}
	return out, nil
}

// putSibling writes a sibling record.
func (s *Store) putSibling(kind, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.rec.PutSibling(context.Background(), kind, key, data, false)
}

func thisHolder(now time.Time) Holder {
	host, _ := os.Hostname()
	return Holder{PID: os.Getpid(), Host: host, Since: now.UTC()}
}

// CopyState copies the rollout in src to dst, which must have no state for it, holding both locks: a
// rollout another process holds in either place is refused with its *LockedError, and nothing is
// written. Approvals, pauses and promotions travel with it.
func CopyState(ctx context.Context, src, dst *Store) error {
	unlockSrc, err := src.Lock(time.Now())
	if err != nil {
		return err
	}
	defer unlockSrc()
	unlockDst, err := dst.Lock(time.Now())
	if err != nil {
		return err
	}
	defer unlockDst()
	return statestore.Copy(ctx, src.rec, dst.rec, []string{kindApprovals, kindControls})
}
