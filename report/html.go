package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/engine"
)

//go:embed report.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("report").Parse(pageSource))

// page is what the HTML template shows: everything is computed here, so the page's script only
// filters the device table.
type page struct {
	Rollout, PlanHash, Status, Reason string
	Generated, Span                   string
	Totals                            engine.Counts
	Failures                          int
	Waves                             []waveView
	Rollback                          *barView // the rollback's bar on the timeline
	Hubs                              []engine.HubSummary
	Devices                           []deviceRow
}

// waveView is one wave: its bars on the timeline, its gate decision and its batches.
type waveView struct {
	Name, Status, Class, Gate string
	Apply, Bake               *barView // nil when the wave did not get that far
	Counts                    engine.Counts
	Batches                   []batchView
}

// barView is a bar on the timeline, in percent of the rollout's span.
type barView struct {
	Left, Width float64
	Title       string
}

// batchView is a batch's outcome bar: a segment per outcome, in percent of its devices.
type batchView struct {
	N, Devices int
	Segments   []segment
}

type segment struct {
	Class   string
	Count   int
	Percent float64
}

// deviceRow is a device in the page's table, as its script reads it.
type deviceRow struct {
	ID      string `json:"id"`
	Wave    string `json:"wave"`
	Batch   int    `json:"batch"`
	Outcome string `json:"outcome"`
	Failure string `json:"failure,omitempty"`
	Notes   string `json:"notes,omitempty"`
}

// WriteHTML renders rep as one self-contained HTML page: inline CSS and script, the data embedded,
// and a content security policy that forbids every fetch, so it opens from a CI artifact offline.
func WriteHTML(w io.Writer, rep *engine.Report) error {
	return pageTemplate.Execute(w, newPage(rep))
}

func newPage(rep *engine.Report) page {
	p := page{Rollout: rep.Rollout, PlanHash: rep.PlanHash, Status: string(rep.Status), Reason: rep.Reason,
		Generated: rep.Time.UTC().Format(time.RFC3339), Devices: []deviceRow{}, Hubs: rep.Hubs}
	start, end := span(rep)
	p.Span = end.Sub(start).Round(time.Second).String()
	at := func(t time.Time) float64 {
		if end.Sub(start) <= 0 {
			return 0
		}
		return 100 * float64(t.Sub(start)) / float64(end.Sub(start))
	}
	bar := func(from, to time.Time, title string) *barView {
		l, r := at(from), at(to)
		return &barView{Left: l, Width: max(r-l, 0.6), Title: fmt.Sprintf("%s: %s", title, to.Sub(from).Round(100*time.Millisecond))}
	}
	batches := map[string]map[int]*batchView{}
	for _, r := range rep.Devices {
		f := failure(r)
		p.Devices = append(p.Devices, deviceRow{ID: r.Device, Wave: r.Wave, Batch: r.Batch + 1, Outcome: string(r.Outcome),
			Failure: f, Notes: notes(r)})
		if f != "" {
			p.Failures++
		}
		if batches[r.Wave] == nil {
			batches[r.Wave] = map[int]*batchView{}
		}
		b := batches[r.Wave][r.Batch]
		if b == nil {
			b = &batchView{N: r.Batch + 1}
			batches[r.Wave][r.Batch] = b
		}
		b.add(outcomeClass(r))
	}
	for _, wv := range rep.Waves {
		v := waveView{Name: wv.Name, Status: string(wv.Status), Class: waveClass(wv, rep), Counts: wv.Counts, Gate: gate(wv, rep)}
		p.Totals = p.Totals.Add(wv.Counts)
		if !wv.Started.IsZero() {
			applied := wv.BakeStart
			if applied.IsZero() {
				applied = orEnd(wv.Done, end)
			}
			v.Apply = bar(wv.Started, applied, "jobs")
			if !wv.BakeStart.IsZero() {
				v.Bake = bar(wv.BakeStart, orEnd(wv.Done, end), "bake and verify")
			}
		}
		for i := range lastBatch(batches[wv.Name]) + 1 {
			if b := batches[wv.Name][i]; b != nil {
				v.Batches = append(v.Batches, b.percents())
			}
		}
		p.Waves = append(p.Waves, v)
	}
	if rb := rep.Rollback; rb != nil {
		p.Rollback = bar(rb.Started, end, "rollback")
	}
	return p
}

// span is the time the timeline shows: from the rollout's start to its last change (a report written
// after the fact ends where the rollout did), or to the report's time.
func span(rep *engine.Report) (start, end time.Time) {
	start, end = rep.Created, rep.Time
	if !rep.Updated.IsZero() && rep.Updated.Before(end) {
		end = rep.Updated
	}
	for _, w := range rep.Waves {
		if !w.Started.IsZero() && (start.IsZero() || w.Started.Before(start)) {
			start = w.Started
		}
	}
	if start.IsZero() || end.Before(start) {
		start = end
	}
	return start, end
}

// lastBatch is the highest batch index in batches, -1 when there is none.
func lastBatch(batches map[int]*batchView) int {
	last := -1
	for i := range batches {
		last = max(last, i)
	}
	return last
}

func orEnd(t, end time.Time) time.Time {
	if t.IsZero() {
		return end
	}
	return t
}

func (b *batchView) add(class string) {
	b.Devices++
	for i := range b.Segments {
		if b.Segments[i].Class == class {
			b.Segments[i].Count++
			return
		}
	}
	b.Segments = append(b.Segments, segment{Class: class, Count: 1})
}

func (b *batchView) percents() batchView {
	for i := range b.Segments {
		b.Segments[i].Percent = 100 * float64(b.Segments[i].Count) / float64(b.Devices)
	}
	return *b
}

// outcomeClass is the CSS class of a device's outcome on a batch bar.
func outcomeClass(r engine.ReportRow) string {
	if f := failure(r); f != "" {
		return f
	}
	return string(r.Outcome)
}

// waveClass is the CSS class of a wave's timeline row.
func waveClass(wv engine.Wave, rep *engine.Report) string {
	switch {
	case wv.Status == engine.StatusFailed:
		return "failed"
	case rep.Status == engine.StatusRolledBack && wv.Started.IsZero():
		return "pending"
	case rep.Status == engine.StatusRolledBack:
		return "rolledback"
	}
	return string(wv.Status)
}

// gate words a wave's gate decisions for a person.
func gate(wv engine.Wave, rep *engine.Report) string {
	c := wv.Counts
	var parts []string
	switch wv.Status {
	case engine.StatusPending:
		parts = append(parts, "not started")
		if a, ok := rep.Approvals[wv.Name]; ok {
			parts = append(parts, approvedBy(a))
		} else if wv.Gated {
			parts = append(parts, "needs approval")
		}
	case engine.StatusFailed, engine.StatusHalted:
		if reason, ok := strings.CutPrefix(rep.Reason, "wave "+wv.Name+": "); ok {
			parts = append(parts, "gate failed: "+reason)
		} else {
			parts = append(parts, "failed")
		}
	default:
		if a, ok := rep.Approvals[wv.Name]; ok {
			parts = append(parts, approvedBy(a))
		}
		parts = append(parts, fmt.Sprintf("success gate: %d/%d succeeded", c.Succeeded, c.Targeted))
		if wv.VerifyReads > 0 {
			parts = append(parts, fmt.Sprintf("verify %.1f%% after %d reads", wv.VerifyRate*100, wv.VerifyReads))
		}
		if wv.Status == engine.StatusDone {
			parts = append(parts, "passed")
		}
	}
	if rep.Status == engine.StatusRolledBack && !wv.Started.IsZero() {
		parts = append(parts, "rolled back")
	}
	return strings.Join(parts, "; ")
}

// approvedBy words who released a wave's gate, where and when.
func approvedBy(a engine.Approval) string {
	s := "approved by " + a.By
	if a.Host != "" && !strings.HasSuffix(a.By, "@"+a.Host) {
		s += " on " + a.Host
	}
	return s + " at " + a.At.UTC().Format(time.RFC3339)
}
