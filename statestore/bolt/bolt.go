// Package bolt keeps rollout states in a directory: one bbolt database per rollout (NAME.db, mode
// 0600) and a lock file beside it (NAME.lock, flock(2)).
//
// bbolt was chosen over SQLite because it is pure Go (no cgo, so the binary stays static), every write
// is one fsynced, all-or-nothing transaction with copy-on-write pages (a SIGKILL mid-write leaves the
// previous commit intact), and the records are key/value documents that need no query language.
//
// The database is opened for each transaction and closed after it, so `rollout approve` and
// `rollout status` can read and write while `rollout apply` runs; exclusion of concurrent applies is
// the separate lock file. Buckets are created by the first write to them, so a file written by an
// earlier version, with fewer buckets, reads as it was.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/statestore"
	"go.etcd.io/bbolt"
)

// Dir is a state directory.
type Dir struct{ path string }

var _ statestore.Backend = Dir{}

// New returns the state directory at path; the first write creates it (mode 0700).
func New(path string) Dir { return Dir{path: path} }

func (d Dir) String() string { return d.path }

// Open returns rollout name's records in the directory.
func (d Dir) Open(_ context.Context, name string) (statestore.Records, error) {
	return d.Rollout(name)
}

// Rollout is Open with the concrete type, for callers that need the file's path.
func (d Dir) Rollout(name string) (*Rollout, error) {
	if err := statestore.CheckName(name); err != nil {
		return nil, err
	}
	return &Rollout{dir: d.path, name: name}, nil
}

// Names lists the rollouts that have a database in the directory, sorted; none when the directory
// does not exist.
func (d Dir) Names(context.Context) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(d.path, "*.db"))
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

// Rollout is one rollout's database.
type Rollout struct{ dir, name string }

var _ statestore.Records = (*Rollout)(nil)

// Path is the database file.
func (r *Rollout) Path() string { return filepath.Join(r.dir, r.name+".db") }

func (r *Rollout) lockPath() string { return filepath.Join(r.dir, r.name+".lock") }

// Exists reports whether the database file exists.
func (r *Rollout) Exists(context.Context) (bool, error) {
	_, err := os.Stat(r.Path())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (r *Rollout) open() (*bbolt.DB, error) {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	db, err := bbolt.Open(r.Path(), 0o600, &bbolt.Options{Timeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", r.Path(), err)
	}
	return db, nil
}

// View runs fn in a read transaction; ErrNoState when the rollout has no database.
func (r *Rollout) View(ctx context.Context, fn func(statestore.Tx) error) error {
	if ok, err := r.Exists(ctx); err != nil || !ok {
		if err == nil {
			err = statestore.ErrNoState
		}
		return err
	}
	return r.run(false, fn)
}

// Update runs fn in one write transaction: everything fn wrote is committed together, or nothing is.
func (r *Rollout) Update(_ context.Context, fn func(statestore.Tx) error) error {
	return r.run(true, fn)
}

func (r *Rollout) run(write bool, fn func(statestore.Tx) error) error {
	db, err := r.open()
	if err != nil {
		return err
	}
	defer db.Close()
	if write {
		return db.Update(func(tx *bbolt.Tx) error { return fn(boltTx{tx}) })
	}
	return db.View(func(tx *bbolt.Tx) error { return fn(boltTx{tx}) })
}

type boltTx struct{ tx *bbolt.Tx }

func (t boltTx) Get(bucket, key string) ([]byte, error) {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil, nil
	}
	return b.Get([]byte(key)), nil
}

func (t boltTx) Put(bucket, key string, data []byte) error {
	if !t.tx.Writable() {
		return errors.New("state: write in a read transaction")
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// PutSibling writes a sibling record in a transaction of its own: the database is locked only for
// that write, never by an apply's lock.
func (r *Rollout) PutSibling(_ context.Context, kind, key string, data []byte, create bool) error {
	return r.run(true, func(t statestore.Tx) error {
		if create {
			if old, err := t.Get(kind, key); err != nil || old != nil {
				if err == nil {
					err = statestore.ErrExists
				}
				return err
			}
		}
		return t.Put(kind, key, data)
	})
}

// DeleteSibling removes a sibling record.
func (r *Rollout) DeleteSibling(_ context.Context, kind, key string) error {
	db, err := r.open()
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(kind)); b != nil {
			return b.Delete([]byte(key))
		}
		return nil
	})
}

// Dump reads every bucket's records in one read transaction.
func (r *Rollout) Dump(ctx context.Context) (map[string]map[string][]byte, error) {
	if ok, err := r.Exists(ctx); err != nil || !ok {
		if err == nil {
			err = statestore.ErrNoState
		}
		return nil, err
	}
	db, err := r.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string]map[string][]byte{}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			m := map[string][]byte{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = append([]byte(nil), v...)
				return nil
			})
		})
	})
	return out, err
}

// Siblings reads every sibling record of kind.
func (r *Rollout) Siblings(ctx context.Context, kind string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if ok, err := r.Exists(ctx); err != nil || !ok {
		return out, err
	}
	db, err := r.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}
