package report

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/iot-rollout/rollout/engine"
)

// Format is a report's file format.
type Format string

// The formats, each named by the extension that selects it.
const (
	JSON  Format = ".json"
	JUnit Format = ".xml"
	HTML  Format = ".html"
)

// Formats lists the formats in the order they are offered.
var Formats = []Format{JSON, JUnit, HTML}

// FormatOf is the format of a report written to path, from its extension (case-insensitive; .htm is
// HTML). An unknown extension is an error that lists the known ones.
func FormatOf(path string) (Format, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".htm" {
		ext = ".html"
	}
	for _, f := range Formats {
		if Format(ext) == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("%s: the report's format comes from its extension: .json, .xml (JUnit) or .html", path)
}

// Write renders rep to w in format f.
func Write(w io.Writer, f Format, rep *engine.Report) error {
	switch f {
	case JSON:
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(data, '\n'))
		return err
	case JUnit:
		return WriteJUnit(w, rep)
	case HTML:
		return WriteHTML(w, rep)
	}
	return fmt.Errorf("unknown report format %q", f)
}

// failure is why a device counts as failed in a report, or "" when it does not: its outcome, or, in a
// wave whose verify failed, a device that did not satisfy the verify condition.
func failure(r engine.ReportRow) string {
	switch r.Outcome {
	case engine.Failed, engine.TimedOut, engine.Unreachable, engine.MethodError:
		return string(r.Outcome)
	}
	if r.Verify == "notSatisfied" {
		return "verifyNotSatisfied"
	}
	return ""
}

// failureText words a failing device's failure for a person, with its method status and error code.
func failureText(r engine.ReportRow) string {
	var s string
	switch failure(r) {
	case string(engine.Failed):
		s = "the job failed on the device"
	case string(engine.TimedOut):
		s = "not reached before the job ended"
	case string(engine.Unreachable):
		s = "the device was not online"
	case string(engine.MethodError):
		s = fmt.Sprintf("the direct method answered status %d", r.MethodStatus)
	case "verifyNotSatisfied":
		s = "the device did not satisfy the wave's verify condition"
	}
	if r.ErrorCode != "" {
		s += " (error code " + r.ErrorCode + ")"
	}
	return s
}
