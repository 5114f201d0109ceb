package emulator

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/iot-rollout/rollout/hubapi"
)

// The data file is JSON lines: a header, then one line per device and one per job. It is written on
// Close through a temporary file, fsync and rename, so a crash leaves the previous snapshot intact.
//
// A device line keeps the due time of the report its simulated device still owes (convergeDue), so that
// a hub stopped within a converge delay and started again from its data file, as a cron-driven
// `rollout apply --no-wait --emulate` does on every run, still sees its devices converge. The report
// answers the desired properties saved on the same line, so nothing else is needed to make it again.
// Data files written before convergeDue existed simply have no report pending.

const dataFormat = "rollout-emulator-data/1"

type snapHeader struct {
	Format string `json:"format"`
	Seed   int64  `json:"seed"`
}

type snapLine struct {
	Device        *snapDevice `json:"device,omitempty"`
	Job           *snapJob    `json:"job,omitempty"`
	Configuration *snapConfig `json:"configuration,omitempty"`
}

// snapConfig is a configuration as it was given, with its times and etag.
type snapConfig struct {
	Request hubapi.Configuration `json:"request"`
	Times   [2]int64             `json:"times"` // created, updated
	ETag    int64                `json:"etag"`
}

type snapMeta struct {
	Key string `json:"k"`
	At  int64  `json:"at"`
	Ver int64  `json:"v"`
}

type snapDevice struct {
	ID           string          `json:"id"`
	Module       string          `json:"module,omitempty"` // a module of device ID, on a line after the device's
	ManagedBy    string          `json:"managedBy,omitempty"`
	Group        string          `json:"group,omitempty"`
	Flags        uint8           `json:"flags,omitempty"`
	Disabled     bool            `json:"disabled,omitempty"`
	StatusReason string          `json:"statusReason,omitempty"`
	ModelID      string          `json:"modelId,omitempty"`
	IoTEdge      bool            `json:"iotEdge,omitempty"`
	PrimaryKey   string          `json:"primaryKey,omitempty"`
	SecondaryKey string          `json:"secondaryKey,omitempty"`
	Tags         json.RawMessage `json:"tags,omitempty"`
	Desired      json.RawMessage `json:"desired,omitempty"`
	Reported     json.RawMessage `json:"reported,omitempty"`
	Versions     [4]int64        `json:"versions"` // twin, desired, reported, device etag
	Times        [5]int64        `json:"times"`    // created, desired, reported, status, last activity
	DesiredMeta  []snapMeta      `json:"desiredMeta,omitempty"`
	ReportedMeta []snapMeta      `json:"reportedMeta,omitempty"`
	Counts       [4]uint32       `json:"counts"`                // method calls, delivered, twin patches, reports
	ConvergeDue  int64           `json:"convergeDue,omitempty"` // unix ns the pending report is due; 0: none
}

type snapRow struct {
	DeviceID string               `json:"deviceId"`
	Status   uint8                `json:"status"`
	Start    int64                `json:"start,omitempty"`
	End      int64                `json:"end,omitempty"`
	Result   *hubapi.MethodResult `json:"result,omitempty"`
	ErrCode  string               `json:"errCode,omitempty"`
	ErrDesc  string               `json:"errDesc,omitempty"`
}

type snapJob struct {
	Request  hubapi.JobRequest `json:"request"`
	Status   string            `json:"status"`
	Times    [4]int64          `json:"times"` // created, start, began, end
	Failure  string            `json:"failure,omitempty"`
	Rows     []snapRow         `json:"rows,omitempty"`
	Timeline []JobEvent        `json:"timeline,omitempty"`
}

func toSnapMeta(m []metaEntry) []snapMeta {
	out := make([]snapMeta, len(m))
	for i, e := range m {
		out[i] = snapMeta{e.key, e.at, e.ver}
	}
	return out
}

func fromSnapMeta(m []snapMeta) []metaEntry {
	if len(m) == 0 {
		return nil
	}
	out := make([]metaEntry, len(m))
	for i, e := range m {
		out[i] = metaEntry{e.Key, e.At, e.Ver}
	}
	return out
}

// saveData writes the snapshot of twins and jobs to path atomically.
func (s *Server) saveData(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("emulator: data file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	err = enc.Encode(snapHeader{Format: dataFormat, Seed: s.opts.Seed})
	pending := s.conv.live()
	if err == nil {
		err = s.store.forEach(func(d *device) error {
			return enc.Encode(snapLine{Device: snapOfDevice(d, pending)})
		})
	}
	if err == nil {
		err = s.store.forEachModule(func(m *device) error {
			return enc.Encode(snapLine{Device: snapOfDevice(m, pending)})
		})
	}
	if err == nil {
		err = s.store.forEachConfig(func(c *configuration) error {
			return enc.Encode(snapLine{Configuration: &snapConfig{Request: c.req, Times: [2]int64{c.created, c.updated}, ETag: c.etag}})
		})
	}
	if err == nil {
		err = s.jobs.forEach(func(j *job, events []JobEvent) error {
			return enc.Encode(snapLine{Job: snapOfJob(j, events)})
		})
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("emulator: writing data file %s: %w", path, err)
	}
	return nil
}

// snapOfDevice is d's line in the data file; pending holds the reports still due.
func snapOfDevice(d *device, pending map[*device]convItem) *snapDevice {
	var due int64
	if it, ok := pending[d]; ok && it.ver == d.desiredVer {
		// A due time of 0 would read as none pending; a clock that far back is not worth a field.
		due = max(it.due, 1)
	}
	var module, managedBy string
	if d.mod != nil {
		module, managedBy = d.mod.id, d.mod.managedBy
	}
	return &snapDevice{
		ID: d.id, Module: module, ManagedBy: managedBy, Group: d.group, Flags: d.flags, Disabled: d.disabled, StatusReason: d.statusReason,
		ModelID: d.modelID, IoTEdge: d.iotEdge, PrimaryKey: d.primaryKey, SecondaryKey: d.secondaryKey,
		Tags: rawSection(d.tags), Desired: rawSection(d.desired), Reported: rawSection(d.reported),
		Versions:    [4]int64{d.version, d.desiredVer, d.reportedVer, d.deviceETag},
		Times:       [5]int64{d.created, d.desiredAt, d.reportedAt, d.statusAt, d.lastActivity},
		DesiredMeta: toSnapMeta(d.desiredMeta), ReportedMeta: toSnapMeta(d.reportedMeta),
		Counts:      [4]uint32{d.methodCalls, d.methodCallsDelivered, d.twinPatches, d.reports},
		ConvergeDue: due,
	}
}

// snapOfJob is j's line in the data file, with its timeline.
func snapOfJob(j *job, events []JobEvent) *snapJob {
	sj := &snapJob{Request: j.req, Status: j.status, Times: [4]int64{j.created, j.start, j.began, j.end}, Failure: j.failure, Timeline: events}
	for _, r := range j.rows {
		sj.Rows = append(sj.Rows, snapRow{DeviceID: r.dev.id, Status: r.status, Start: r.start, End: r.end,
			Result: r.result, ErrCode: r.errCode, ErrDesc: r.errDesc})
	}
	return sj
}

// loadData reads a data file written by saveData; it reports false when the file does not exist yet.
// Devices keep the behaviour of their fleet group when the fleet still has it.
func (s *Server) loadData(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("emulator: data file: %w", err)
	}
	defer f.Close()
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("emulator: data file %s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	var hdr snapHeader
	if err := dec.Decode(&hdr); err != nil || hdr.Format != dataFormat {
		return false, fail(1, "not an emulator data file (want format %s)", dataFormat)
	}
	l := &dataLoader{s: s, groups: map[string]*Behavior{}, interned: &internTable{m: map[string]map[string]any{}}}
	if s.opts.Fleet != nil {
		for i := range s.opts.Fleet.Groups {
			g := &s.opts.Fleet.Groups[i]
			l.groups[g.Name] = &g.Behavior
		}
	}
	line := 1
	for dec.More() {
		line++
		var sl snapLine
		if err := dec.Decode(&sl); err != nil {
			return false, fail(line, "%v", err)
		}
		switch {
		case sl.Device != nil:
			err = l.device(sl.Device)
		case sl.Job != nil:
			err = l.job(sl.Job)
		case sl.Configuration != nil:
			err = l.s.store.restoreConfig(sl.Configuration)
		default:
			err = errors.New("neither a device, a job nor a configuration")
		}
		if err != nil {
			return false, fail(line, "%v", err)
		}
	}
	return true, nil
}

// dataLoader puts the lines of a data file back into a server's stores.
type dataLoader struct {
	s        *Server
	groups   map[string]*Behavior // the fleet's groups by name
	interned *internTable
}

// device restores a device line; it keeps the behaviour of its fleet group when the fleet still has it.
func (l *dataLoader) device(sd *snapDevice) error {
	if err := validDeviceID(sd.ID); err != nil {
		return err
	}
	var sections [3]map[string]any
	for i, raw := range []json.RawMessage{sd.Tags, sd.Desired, sd.Reported} {
		var err error
		if sections[i], err = l.interned.get(raw); err != nil {
			return fmt.Errorf("device %s: %v", sd.ID, err)
		}
	}
	beh := l.s.store.defaults
	if b, ok := l.groups[sd.Group]; ok {
		beh = b
	}
	d := &device{id: sd.ID, idAny: sd.ID, beh: beh, group: sd.Group, flags: sd.Flags &^ flagConnected, disabled: sd.Disabled,
		statusReason: sd.StatusReason, modelID: sd.ModelID, iotEdge: sd.IoTEdge,
		primaryKey: sd.PrimaryKey, secondaryKey: sd.SecondaryKey,
		tags: sections[0], desired: sections[1], reported: sections[2],
		version: sd.Versions[0], desiredVer: sd.Versions[1], reportedVer: sd.Versions[2], deviceETag: sd.Versions[3],
		created: sd.Times[0], desiredAt: sd.Times[1], reportedAt: sd.Times[2], statusAt: sd.Times[3], lastActivity: sd.Times[4],
		desiredMeta: fromSnapMeta(sd.DesiredMeta), reportedMeta: fromSnapMeta(sd.ReportedMeta),
		methodCalls: sd.Counts[0], methodCallsDelivered: sd.Counts[1], twinPatches: sd.Counts[2], reports: sd.Counts[3],
	}
	if err := l.add(d, sd); err != nil {
		return err
	}
	if sd.ConvergeDue != 0 {
		l.s.conv.restore(d, sd.ConvergeDue)
	}
	return nil
}

// add puts a restored device or module into the store.
func (l *dataLoader) add(d *device, sd *snapDevice) error {
	if sd.Module == "" {
		return l.s.store.add(d)
	}
	if err := validModuleID(sd.Module); err != nil {
		return err
	}
	d.mod = &moduleInfo{id: sd.Module, idAny: sd.Module, key: moduleKey(sd.ID, sd.Module), managedBy: sd.ManagedBy}
	return l.s.store.addModule(d)
}

// job restores a job line with its rows; a row whose device is gone keeps a deleted stand-in.
func (l *dataLoader) job(sj *snapJob) error {
	if !validJobID(sj.Request.JobID) {
		return fmt.Errorf("invalid job id %q", sj.Request.JobID)
	}
	st := l.s.store
	j := &job{id: sj.Request.JobID, idAny: sj.Request.JobID, typAny: sj.Request.Type, req: sj.Request,
		status: sj.Status, created: sj.Times[0], start: sj.Times[1], began: sj.Times[2], end: sj.Times[3],
		failure: sj.Failure, cancel: make(chan struct{})}
	if j.req.Type == hubapi.JobTypeUpdateTwin {
		if j.req.UpdateTwin == nil {
			return fmt.Errorf("twin job %s has no updateTwin", j.id)
		}
		var err error
		if j.write, err = patchWrite(j.req.UpdateTwin); err != nil {
			return fmt.Errorf("job %s: %v", j.id, err)
		}
	} else if j.req.CloudToDeviceMethod == nil {
		return fmt.Errorf("method job %s has no cloudToDeviceMethod", j.id)
	}
	j.rows = make([]deviceJobRow, len(sj.Rows))
	for i, r := range sj.Rows {
		d, err := st.lookup(r.DeviceID)
		if err != nil {
			d = &device{id: r.DeviceID, idAny: r.DeviceID, beh: st.defaults, deleted: true}
		}
		if int(r.Status) >= len(rowStatus) {
			return fmt.Errorf("job %s: bad row status %d", j.id, r.Status)
		}
		j.rows[i] = deviceJobRow{job: j, dev: d, status: r.Status, start: r.Start, end: r.End,
			result: r.Result, errCode: r.ErrCode, errDesc: r.ErrDesc}
		j.counts[r.Status]++
	}
	return l.s.jobs.restore(j, sj.Timeline)
}

// rawSection renders a twin section for the data file; nil stays absent.
func rawSection(m map[string]any) json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	return appendObject(nil, m)
}

// internTable shares identical sections between the devices read from a data file, as the fleet
// loader shares a group's maps, so that a million-device snapshot reloads as compactly as it started.
type internTable struct {
	m map[string]map[string]any
}

func (t *internTable) get(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if m, ok := t.m[string(raw)]; ok {
		return m, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if err := validateSection(m, false, maxPropsBytes); err != nil {
		return nil, err
	}
	if len(t.m) < 100_000 {
		t.m[string(raw)] = m
	}
	return m, nil
}
