package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// Holder names the process that holds a rollout's lock.
type Holder struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// LockedError is returned by Store.Lock when another process holds the rollout.
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

// ErrNoState is returned by Store.Load when the rollout has never been applied.
var ErrNoState = errors.New("no state for this rollout")

// Buckets of a rollout's state file.
var (
	bucketState     = []byte("state")     // "state" → State (device lists written before bucketLists too)
	bucketLists     = []byte("lists")     // "devices/NNNNNN", "unverified/NNNNNN", "rollback/W/B" → []string
	bucketSnapshots = []byte("snapshots") // device id → Prior
	bucketOutcomes  = []byte("outcomes")  // device id → DeviceOutcome
	bucketApprovals = []byte("approvals") // wave name → Approval
	bucketControls  = []byte("controls")  // "pause", "promote/WAVE" → Control
	bucketJobs      = []byte("jobs")      // "WWWWWW/BBBBBB/f|r/PPPPPP" → Job (forward or rollback)
	keyState        = []byte("state")
)

// Store is one rollout's durable state: the file NAME.db under the state directory, a bbolt database.
// bbolt was chosen over SQLite because it is pure Go (no cgo, so the binary stays static), every write
// is one fsynced, all-or-nothing transaction with copy-on-write pages (a SIGKILL mid-write leaves the
// previous commit intact), and the records are key/value documents that need no query language.
//
// The database is opened for each transaction and closed after it, so `rollout approve` and
// `rollout status` can read and write while `rollout apply` runs; exclusion of concurrent applies is
// the separate lock file (see Lock).
type Store struct {
	dir, name string

	mu sync.Mutex
	// written holds the job records this Store last committed, by key: a save writes only the jobs
	// that differ, so its cost does not grow with the jobs the rollout already has.
	written map[jobRef]Job
}

// jobRef names a job record: its wave, batch, kind ('f' forward, 'r' rollback) and part.
type jobRef struct {
	wave, batch int
	kind        byte
	part        int
}

func (k jobRef) key() []byte {
	return fmt.Appendf(nil, "%06d/%06d/%c/%06d", k.wave, k.batch, k.kind, k.part)
}

// OpenStore returns the store of rollout name under dir, creating dir (mode 0700) if needed. It does
// not create the database file; the first Update does.
func OpenStore(dir, name string) (*Store, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("invalid rollout name %q", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &Store{dir: dir, name: name, written: map[jobRef]Job{}}, nil
}

// Name is the rollout's name.
func (s *Store) Name() string { return s.name }

// Path is the database file.
func (s *Store) Path() string { return filepath.Join(s.dir, s.name+".db") }

// Exists reports whether the rollout has state.
func (s *Store) Exists() bool {
	_, err := os.Stat(s.Path())
	return err == nil
}

// Names lists the rollouts that have state under dir, sorted.
func Names(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.db"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range m {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".db"))
	}
	sort.Strings(names)
	return names, nil
}

func (s *Store) open(readOnly bool) (*bbolt.DB, error) {
	if readOnly && !s.Exists() {
		return nil, ErrNoState
	}
	db, err := bbolt.Open(s.Path(), 0o600, &bbolt.Options{Timeout: 30 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", s.Path(), err)
	}
	return db, nil
}

// Tx is a transaction on a rollout's state.
type Tx struct {
	tx      *bbolt.Tx
	s       *Store
	pending map[jobRef]Job // job records this transaction wrote
}

// Update runs fn in one write transaction: everything fn wrote is committed together, or nothing is.
func (s *Store) Update(fn func(*Tx) error) error {
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	t := &Tx{s: s, pending: map[jobRef]Job{}}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketSnapshots, bucketOutcomes, bucketApprovals, bucketJobs, bucketLists, bucketControls} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		t.tx = tx
		return fn(t)
	})
	if err == nil {
		s.mu.Lock()
		maps.Copy(s.written, t.pending)
		s.mu.Unlock()
	}
	return err
}

// View runs fn in a read transaction. It returns ErrNoState when the rollout has no state file.
func (s *Store) View(fn func(*Tx) error) error {
	db, err := s.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketState) == nil {
			return ErrNoState
		}
		return fn(&Tx{tx: tx, s: s})
	})
}

// Load reads the rollout's State; ErrNoState when it was never applied.
func (s *Store) Load() (*State, error) {
	if !s.Exists() {
		return nil, ErrNoState
	}
	var st *State
	err := s.View(func(tx *Tx) error {
		var err error
		st, err = tx.State()
		return err
	})
	return st, err
}

func getJSON(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	if b == nil {
		return false, nil
	}
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("corrupt state record %q: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// State reads the rollout record; ErrNoState when there is none.
func (t *Tx) State() (*State, error) {
	var st State
	ok, err := getJSON(t.tx.Bucket(bucketState), keyState, &st)
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
	return putJSON(t.tx.Bucket(bucketState), keyState, &root)
}

// putJobs writes the jobs of a batch (kind 'f' forward, 'r' rollback) that differ from what this
// Store last committed.
func (t *Tx) putJobs(wave, batch int, kind byte, jobs []Job) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	b := t.tx.Bucket(bucketJobs)
	for p, j := range jobs {
		ref := jobRef{wave, batch, kind, p}
		if w, ok := t.s.written[ref]; ok && w == j {
			continue
		}
		if err := putJSON(b, ref.key(), j); err != nil {
			return err
		}
		t.pending[ref] = j
	}
	return nil
}

// readJobs reads n job records of a batch.
func (t *Tx) readJobs(wave, batch int, kind byte, n int) ([]Job, error) {
	b := t.tx.Bucket(bucketJobs)
	jobs := make([]Job, n)
	for p := range jobs {
		key := jobRef{wave, batch, kind, p}.key()
		ok, err := getJSON(b, key, &jobs[p])
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
// rewritten root (bbolt rewrites a leaf whole, and a wave's list is megabytes), or from the state
// bucket of a file written before.
func (t *Tx) getList(key []byte, ids *[]string) error {
	if b := t.tx.Bucket(bucketLists); b != nil {
		if ok, err := getJSON(b, key, ids); ok || err != nil {
			return err
		}
	}
	_, err := getJSON(t.tx.Bucket(bucketState), key, ids)
	return err
}

func devicesKey(wave int) []byte { return fmt.Appendf(nil, "devices/%06d", wave) }

// Devices reads a wave's resolved devices (nil when not resolved).
func (t *Tx) Devices(wave int) ([]string, error) {
	var ids []string
	err := t.getList(devicesKey(wave), &ids)
	return ids, err
}

// PutDevices stores a wave's resolved devices.
func (t *Tx) PutDevices(wave int, ids []string) error {
	return putJSON(t.tx.Bucket(bucketLists), devicesKey(wave), ids)
}

func unverifiedKey(wave int) []byte { return fmt.Appendf(nil, "unverified/%06d", wave) }

// Unverified reads the devices of a wave that did not satisfy its failed verify (nil when verify did
// not fail).
func (t *Tx) Unverified(wave int) ([]string, error) {
	var ids []string
	err := t.getList(unverifiedKey(wave), &ids)
	return ids, err
}

// PutUnverified stores the devices of a wave that did not satisfy its verify when it failed.
func (t *Tx) PutUnverified(wave int, ids []string) error {
	return putJSON(t.tx.Bucket(bucketLists), unverifiedKey(wave), ids)
}

// Snapshot reads a device's captured prior values; ok is false when none was captured.
func (t *Tx) Snapshot(id string) (p Prior, ok bool, err error) {
	ok, err = getJSON(t.tx.Bucket(bucketSnapshots), []byte(id), &p)
	return p, ok, err
}

// putSnapshotJSON stores a device's prior values, encoded (see encodedPrior). A prior already stored
// is kept: the first capture is the device's value before the rollout, and a resumed run must not
// overwrite it with a changed twin.
func (t *Tx) putSnapshotJSON(id string, data []byte) error {
	b := t.tx.Bucket(bucketSnapshots)
	if b.Get([]byte(id)) != nil {
		return nil
	}
	return b.Put([]byte(id), data)
}

// Outcome reads a device's recorded outcome.
func (t *Tx) Outcome(id string) (o DeviceOutcome, ok bool, err error) {
	ok, err = getJSON(t.tx.Bucket(bucketOutcomes), []byte(id), &o)
	return o, ok, err
}

// PutOutcome stores a device's outcome.
func (t *Tx) PutOutcome(id string, o DeviceOutcome) error {
	return putJSON(t.tx.Bucket(bucketOutcomes), []byte(id), o)
}

// Approval reads a wave's approval.
func (t *Tx) Approval(wave string) (a Approval, ok bool, err error) {
	ok, err = getJSON(t.tx.Bucket(bucketApprovals), []byte(wave), &a)
	return a, ok, err
}

// PutApproval stores a wave's approval.
func (t *Tx) PutApproval(wave string, a Approval) error {
	return putJSON(t.tx.Bucket(bucketApprovals), []byte(wave), a)
}

func conflictsKey(wave, batch int) []byte {
	return fmt.Appendf(nil, "conflicts/%06d/%06d", wave, batch)
}

// Conflicts reads the devices a rollback of batch batch of wave wave left alone, sorted.
func (t *Tx) Conflicts(wave, batch int) ([]string, error) {
	var ids []string
	err := t.getList(conflictsKey(wave, batch), &ids)
	return ids, err
}

// PutConflicts stores the devices a rollback of a batch left alone because someone changed them.
func (t *Tx) PutConflicts(wave, batch int, ids []string) error {
	return putJSON(t.tx.Bucket(bucketLists), conflictsKey(wave, batch), ids)
}

func rollbackDevicesKey(wave, batch int) []byte {
	return fmt.Appendf(nil, "rollback/%06d/%06d", wave, batch)
}

// RollbackDevices reads the devices a batch's compensating method jobs target.
func (t *Tx) RollbackDevices(wave, batch int) ([]string, error) {
	var ids []string
	err := t.getList(rollbackDevicesKey(wave, batch), &ids)
	return ids, err
}

// PutRollbackDevices stores the devices a batch's compensating method jobs target.
func (t *Tx) PutRollbackDevices(wave, batch int, ids []string) error {
	return putJSON(t.tx.Bucket(bucketLists), rollbackDevicesKey(wave, batch), ids)
}
