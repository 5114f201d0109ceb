package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

// checkReportPath checks, before the hub is dialled, that a report can be written at path: a file
// name (not a directory) with a known extension, in a directory that exists and takes new files.
func checkReportPath(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory; give a file name such as %s", path, filepath.Join(path, "report.json"))
	}
	if ext := filepath.Ext(path); ext != ".json" {
		return fmt.Errorf("%s: the report's format comes from its extension, and .json is the one there is", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".rollout-report-*")
	if err != nil {
		return fmt.Errorf("cannot write to %s: %w", filepath.Dir(path), errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// writeReport writes the report of the rollout in store to path, from its state alone, as of now.
func writeReport(store *engine.Store, path string, now time.Time) error {
	rep, err := engine.BuildReport(store, now)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	// Write then rename, so a reader never sees half a report.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
