package main

import (
	"context"
	"strings"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/statestore"
	"github.com/iot-rollout/rollout/statestore/azblob"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

// sharedState reports whether a --state value names a blob container rather than a directory.
func sharedState(spec string) bool {
	return strings.HasPrefix(spec, "https://") || strings.HasPrefix(spec, "http://")
}

// stateBackend returns where the --state value (or ROLLOUT_STATE) keeps rollouts: an Azure Blob
// container given as a URL (credentials from AZURE_STORAGE_CONNECTION_STRING, else Microsoft Entra),
// or a directory.
func stateBackend(e *env, spec string) (statestore.Backend, error) {
	if sharedState(spec) {
		return azblob.New(spec, azblob.Options{ConnectionString: e.getenv("AZURE_STORAGE_CONNECTION_STRING")})
	}
	return bolt.New(spec), nil
}

// openState opens rollout name's store in the state --state names.
func openState(e *env, spec, name string) (*engine.Store, error) {
	b, err := stateBackend(e, spec)
	if err != nil {
		return nil, err
	}
	return engine.OpenStore(context.Background(), b, name)
}

// hasState reports whether the rollout in store has state; a state that cannot be read has none
// for this purpose (the caller's next read says why).
func hasState(store *engine.Store) bool {
	ok, err := store.Exists()
	return ok && err == nil
}
