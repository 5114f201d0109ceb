package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/report"
)

// checkReportPath checks, before the hub is dialled, that a report can be written at path: a file
// name (not a directory) whose extension names a format, in a directory that exists and takes new
// files.
func checkReportPath(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory; give a file name such as %s", path, filepath.Join(path, "report.html"))
	}
	if _, err := report.FormatOf(path); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".rollout-report-*")
	if err != nil {
		return fmt.Errorf("cannot write to %s: %w", filepath.Dir(path), errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// writeReport writes the report of the rollout in store to path, from its state alone, as of now,
// in the format path's extension names.
func writeReport(store *engine.Store, path string, now time.Time) error {
	format, err := report.FormatOf(path)
	if err != nil {
		return err
	}
	rep, err := engine.BuildReport(store, now)
	if err != nil {
		return err
	}
	// Write then rename, so a reader never sees half a report.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = errors.Join(report.Write(w, format, rep), w.Flush(), f.Close())
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
