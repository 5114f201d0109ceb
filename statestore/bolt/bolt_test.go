package bolt_test

import (
	"context"
	"os"
	"testing"

	"github.com/iot-rollout/rollout/statestore"
	"github.com/iot-rollout/rollout/statestore/bolt"
	"github.com/iot-rollout/rollout/statestore/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Features{}, func(t *testing.T) storetest.Env {
		dir := t.TempDir()
		return storetest.Env{Backend: bolt.New(dir), Other: func() statestore.Backend { return bolt.New(dir) }}
	})
}

func TestFileMode(t *testing.T) {
	r, err := bolt.New(t.TempDir() + "/state").Rollout("fw")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(context.Background(), func(tx statestore.Tx) error { return tx.Put("state", "state", []byte("{}")) }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
}
