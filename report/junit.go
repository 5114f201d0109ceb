package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

// The JUnit XML elements, as the common CI readers (GitHub, GitLab, Jenkins, Azure Pipelines) take
// them: testsuites of testsuite of testcase, a failure or skipped element in a case.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit renders rep as JUnit XML: a test suite per wave and a test case per device the wave
// targeted. A device that failed, timed out, was unreachable, answered its method with a non-2xx
// status, or did not satisfy a failed verify is a failure whose type is that outcome and whose
// message carries the error code; a device whose job has not ended is skipped. Rolled-back and
// conflicting devices, and devices whose outcome is a retry's, say so in their system-out.
func WriteJUnit(w io.Writer, rep *engine.Report) error {
	rows := map[string][]engine.ReportRow{}
	for _, r := range rep.Devices {
		rows[r.Wave] = append(rows[r.Wave], r)
	}
	start, end := span(rep)
	all := junitSuites{Name: "rollout " + rep.Rollout, Time: seconds(start, end)}
	for _, wv := range rep.Waves {
		s := junitSuite{Name: rep.Rollout + "/" + wv.Name, Cases: []junitCase{},
			Properties: []junitProperty{{"status", string(wv.Status)}, {"devices", fmt.Sprint(wv.DeviceCount)}}}
		s.Time = seconds(wv.Started, orEnd(wv.Done, end))
		if !wv.Started.IsZero() {
			s.Timestamp = wv.Started.UTC().Format("2006-01-02T15:04:05")
		}
		if wv.VerifyReads > 0 {
			s.Properties = append(s.Properties, junitProperty{"verifyRate", fmt.Sprintf("%.4g", wv.VerifyRate)})
		}
		for _, r := range rows[wv.Name] {
			c := junitCase{Name: r.Device, Classname: rep.Rollout + "." + wv.Name, Time: "0"}
			if f := failure(r); f != "" {
				c.Failure = &junitFailure{Type: f, Message: failureText(r), Text: fmt.Sprintf("device %s, wave %s, batch %d: %s", r.Device, r.Wave, r.Batch+1, failureText(r))}
				s.Failures++
			} else if r.Outcome == engine.Pending {
				c.Skipped = &junitSkipped{Message: "its job has not ended"}
				s.Skipped++
			}
			c.SystemOut = notes(r)
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		all.Tests, all.Failures, all.Skipped = all.Tests+s.Tests, all.Failures+s.Failures, all.Skipped+s.Skipped
		all.Suites = append(all.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// notes are what a test case's system-out says beside its outcome.
func notes(r engine.ReportRow) string {
	var n []string
	n = append(n, "outcome: "+string(r.Outcome))
	if r.MethodStatus != 0 {
		n = append(n, fmt.Sprintf("method status: %d", r.MethodStatus))
	}
	if r.Attempt > 0 {
		n = append(n, fmt.Sprintf("from retry %d", r.Attempt))
	}
	if r.RolledBack {
		n = append(n, "rolled back")
	}
	if r.Conflict {
		n = append(n, "left alone by the rollback: someone changed what the rollout wrote")
	}
	return strings.Join(n, "; ")
}

// seconds is the time from start to end in seconds, as JUnit writes it; 0 when start is unknown.
func seconds(start, end time.Time) string {
	if start.IsZero() || end.Before(start) {
		return "0"
	}
	return fmt.Sprintf("%.3f", end.Sub(start).Seconds())
}
