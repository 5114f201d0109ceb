package emulator

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iot-rollout/rollout/hubapi"
)

// Fleet is a parsed fleet file: generated groups of devices that share tags, properties and behaviour,
// plus explicitly written twins.
type Fleet struct {
	Name     string   // the file name, for messages
	Defaults Behavior // behaviour of explicit devices without their own and of devices created at run time
	Groups   []Group
	Devices  []DeviceSpec
	// Configurations are automatic device configurations the hub starts with, created in this order.
	Configurations []hubapi.Configuration
}

// Group is a generated group of Count devices named IDPrefix followed by a zero-padded index of at least
// four digits (canary-0000 ... canary-0019).
type Group struct {
	Name     string
	IDPrefix string
	Count    int
	Tags     map[string]any
	Desired  map[string]any
	Reported map[string]any
	Behavior Behavior
}

// DeviceSpec is an explicit twin of a fleet file.
type DeviceSpec struct {
	DeviceID        string
	Status          string // "enabled" (default) or "disabled"
	StatusReason    string
	ConnectionState string // "Disconnected" makes the device offline whatever its behaviour says
	ModelID         string
	IoTEdge         bool
	Tags            map[string]any
	Desired         map[string]any
	Reported        map[string]any
	Behavior        Behavior
	Modules         []ModuleSpec
}

// ModuleSpec is a module identity a fleet file's device lists. A module is simulated as its device
// is, until a client connects as it.
type ModuleSpec struct {
	ModuleID  string
	ManagedBy string
	ModelID   string
	Tags      map[string]any
	Desired   map[string]any
	Reported  map[string]any
}

// Behavior says how simulated devices act. Shares are fractions in [0, 1]; a share of a generated group
// selects exactly round(share × count) of its devices, the ones with the smallest hash of id and seed, so
// the same devices are chosen on every run.
type Behavior struct {
	Offline         float64       // share of devices that are disconnected
	MethodFailure   float64       // share that answer direct methods with status 500
	MethodTimeout   float64       // share that never answer direct methods (the hub answers 504101)
	MethodLatency   time.Duration // how long the others take to answer
	ConvergeDelay   time.Duration // after a desired change, report the desired values back after this
	ConvergeFailure float64       // share that never report desired values back
	External        bool          // driver: external: never simulated; waits for a real client to connect
	// OnlineAfter, when positive, brings the devices that start offline online this long after the
	// emulator starts (or loads its data file).
	OnlineAfter time.Duration
}

// DefaultBehavior is how a device behaves when nothing says otherwise: online, answering methods at once
// with 200, reporting desired values back after a second.
var DefaultBehavior = Behavior{ConvergeDelay: time.Second}

// MaxFleetDevices bounds the devices one fleet file may generate, so that a typo cannot exhaust memory.
const MaxFleetDevices = 20_000_000

// LoadFleet reads and parses a fleet file.
func LoadFleet(path string) (*Fleet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return ParseFleet(path, data)
}

var idPrefixRE = regexp.MustCompile(`^[A-Za-z0-9\-:.+%_#*?!(),=@;$']*$`)

// ParseFleet parses a fleet file's contents; name is used in error messages. A file that is not a
// valid fleet gives a *FleetError holding every problem found, each with its line, column and path.
func ParseFleet(name string, data []byte) (*Fleet, error) {
	p := &fleetParser{file: name, src: data}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.syntax(err)
		return nil, p.err()
	}
	f := &Fleet{Name: name, Defaults: DefaultBehavior}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return f, nil // empty: a fleet without devices
	}
	if root.Kind != yaml.MappingNode {
		p.add(root, "", "a fleet file holds groups:, devices: and defaults:", "a fleet file must be a mapping of keys, found %s", nodeKind(root))
		return nil, p.err()
	}
	if p.looksLikePlan(root) {
		return nil, p.err()
	}
	p.check(root, fleetSchema, "", "")
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	var ff fleetFile
	if err := root.Decode(&ff); err != nil {
		// The checks above should leave nothing for the decoder to refuse; say what it found without
		// its Go type names.
		p.add(root, "", "", "%s", decodeMessage(err))
		return nil, p.err()
	}
	if ff.Defaults != nil {
		f.Defaults = ff.Defaults.Behavior.apply(DefaultBehavior)
	}
	p.groups(f, ff.Groups, valueOf(root, "groups"))
	p.devices(f, ff.Devices, valueOf(root, "devices"))
	p.configurations(f, ff.Configurations, valueOf(root, "configurations"))
	// Duplicate ids, explicit or generated, are found when the registry is built (see newStore): checking
	// here would mean generating every id twice.
	if err := p.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// item returns the i-th item of list n, or n itself when there is none.
func item(n *yaml.Node, i int) *yaml.Node {
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i]
	}
	return n
}

// at returns the value under key in mapping n, or n when the key is absent, so a problem with a
// missing value points at its mapping.
func at(n *yaml.Node, key string) *yaml.Node {
	if v := valueOf(n, key); v != nil {
		return v
	}
	return n
}

func (p *fleetParser) groups(f *Fleet, groups []groupYAML, list *yaml.Node) {
	total := 0
	names := map[string]*yaml.Node{}
	for i, g := range groups {
		n := item(list, i)
		path := fmt.Sprintf("groups[%d]", i)
		if g.Name == "" {
			p.add(n, path, "give each group a name, such as name: canary", "group has no name")
			continue
		}
		if first, dup := names[g.Name]; dup {
			p.add(at(n, "name"), path+".name", "give each group its own name", "group %q is already defined at line %d", g.Name, first.Line)
			continue
		}
		names[g.Name] = at(n, "name")
		if g.Count == nil {
			p.add(n, path, "add count: with the number of devices, such as count: 100", "group %q has no count", g.Name)
			continue
		}
		if *g.Count < 0 {
			p.add(at(n, "count"), path+".count", "", "count must be zero or more, found %d", *g.Count)
			continue
		}
		total += *g.Count
		if total > MaxFleetDevices {
			p.add(at(n, "count"), path+".count", "the emulator keeps every twin in memory; use fewer devices", "the fleet has more than %d devices", MaxFleetDevices)
			return
		}
		prefix := g.Name + "-"
		prefixAt, prefixPath := at(n, "name"), path+".name"
		if g.IDPrefix != nil {
			prefix = *g.IDPrefix
			prefixAt, prefixPath = at(n, "idPrefix"), path+".idPrefix"
		}
		if !idPrefixRE.MatchString(prefix) || len(prefix) > 100 {
			p.add(prefixAt, prefixPath, "device ids hold letters, digits and -:.+%_#*?!(),=@;$'", "device id prefix %q has characters a device id cannot hold", prefix)
			continue
		}
		grp := Group{Name: g.Name, IDPrefix: prefix, Count: *g.Count, Behavior: g.Behavior.apply(f.Defaults)}
		var err error
		ok := true
		for _, sec := range []struct {
			key   string
			m     map[string]any
			limit int
			out   *map[string]any
		}{{"tags", g.Tags, maxTagsBytes, &grp.Tags}, {"desired", g.Desired, maxPropsBytes, &grp.Desired}, {"reported", g.Reported, maxPropsBytes, &grp.Reported}} {
			if *sec.out, err = normalizeSection(sec.m, sec.limit); err != nil {
				p.add(at(n, sec.key), path+"."+sec.key, "", "%s: %v", sec.key, err)
				ok = false
			}
		}
		if ok {
			f.Groups = append(f.Groups, grp)
		}
	}
}

func (p *fleetParser) devices(f *Fleet, devices []deviceYAML, list *yaml.Node) {
	for i, d := range devices {
		n := item(list, i)
		path := fmt.Sprintf("devices[%d]", i)
		if err := validDeviceID(d.DeviceID); err != nil {
			hint := ""
			if d.DeviceID == "" {
				hint = "give each device its deviceId"
			}
			p.add(at(n, "deviceId"), path+".deviceId", hint, "%v", err)
			continue
		}
		spec := DeviceSpec{DeviceID: d.DeviceID, Status: d.Status, StatusReason: d.StatusReason,
			ConnectionState: d.ConnectionState, ModelID: d.ModelID, Behavior: d.Behavior.apply(f.Defaults)}
		ok := true
		switch spec.Status {
		case "":
			spec.Status = "enabled"
		case "enabled", "disabled":
		default:
			p.add(at(n, "status"), path+".status", "write enabled or disabled", "device %q: status %q is not enabled or disabled", d.DeviceID, d.Status)
			ok = false
		}
		switch spec.ConnectionState {
		case "", "Connected", "Disconnected":
		default:
			p.add(at(n, "connectionState"), path+".connectionState", "write Connected or Disconnected", "device %q: connectionState %q is not Connected or Disconnected", d.DeviceID, d.ConnectionState)
			ok = false
		}
		if d.Capabilities != nil {
			spec.IoTEdge = d.Capabilities.IoTEdge
		}
		var err error
		if spec.Tags, err = normalizeSection(d.Tags, maxTagsBytes); err != nil {
			p.add(at(n, "tags"), path+".tags", "", "device %q: tags: %v", d.DeviceID, err)
			ok = false
		}
		if d.Properties != nil {
			props := at(n, "properties")
			if spec.Desired, err = normalizeSection(d.Properties.Desired, maxPropsBytes); err != nil {
				p.add(at(props, "desired"), path+".properties.desired", "", "device %q: desired: %v", d.DeviceID, err)
				ok = false
			}
			if spec.Reported, err = normalizeSection(d.Properties.Reported, maxPropsBytes); err != nil {
				p.add(at(props, "reported"), path+".properties.reported", "", "device %q: reported: %v", d.DeviceID, err)
				ok = false
			}
		}
		if spec.Modules, err = p.modules(d, at(n, "modules"), path+".modules"); err != nil {
			ok = false
		}
		if ok {
			f.Devices = append(f.Devices, spec)
		}
	}
}

// modules reads the modules of device d, listed at list; a problem is added and returned.
func (p *fleetParser) modules(d deviceYAML, list *yaml.Node, path string) ([]ModuleSpec, error) {
	var out []ModuleSpec
	var failed error
	seen := map[string]bool{}
	for i, m := range d.Modules {
		n := item(list, i)
		mpath := fmt.Sprintf("%s[%d]", path, i)
		fail := func(node *yaml.Node, sub, hint, format string, args ...any) {
			p.add(node, mpath+sub, hint, format, args...)
			failed = errors.New("invalid module")
		}
		if err := validModuleID(m.ModuleID); err != nil {
			fail(at(n, "moduleId"), ".moduleId", "give each module its moduleId", "device %q: %v", d.DeviceID, err)
			continue
		}
		if seen[m.ModuleID] {
			fail(at(n, "moduleId"), ".moduleId", "give each module of a device its own id", "device %q: module %q is listed twice", d.DeviceID, m.ModuleID)
			continue
		}
		seen[m.ModuleID] = true
		spec := ModuleSpec{ModuleID: m.ModuleID, ManagedBy: m.ManagedBy, ModelID: m.ModelID}
		var err error
		if spec.Tags, err = normalizeSection(m.Tags, maxTagsBytes); err != nil {
			fail(at(n, "tags"), ".tags", "", "module %q: tags: %v", m.ModuleID, err)
			continue
		}
		if m.Properties != nil {
			props := at(n, "properties")
			if spec.Desired, err = normalizeSection(m.Properties.Desired, maxPropsBytes); err != nil {
				fail(at(props, "desired"), ".properties.desired", "", "module %q: desired: %v", m.ModuleID, err)
				continue
			}
			if spec.Reported, err = normalizeSection(m.Properties.Reported, maxPropsBytes); err != nil {
				fail(at(props, "reported"), ".properties.reported", "", "module %q: reported: %v", m.ModuleID, err)
				continue
			}
		}
		out = append(out, spec)
	}
	return out, failed
}

// groupIDWidth is the zero-padded width of a group's index: at least four digits.
func groupIDWidth(count int) int {
	w := len(strconv.Itoa(max(count-1, 0)))
	return max(w, 4)
}

// GroupDeviceID is the id of the i-th device of a group.
func GroupDeviceID(g *Group, i int) string {
	return fmt.Sprintf("%s%0*d", g.IDPrefix, groupIDWidth(g.Count), i)
}

// configurations reads the fleet's configurations, each checked as PUT /configurations/{id} checks it.
func (p *fleetParser) configurations(f *Fleet, configs []configYAML, list *yaml.Node) {
	seen := map[string]bool{}
	for i, c := range configs {
		n := item(list, i)
		path := fmt.Sprintf("configurations[%d]", i)
		hc := hubapi.Configuration{ID: c.ID, SchemaVersion: c.SchemaVersion, Labels: c.Labels,
			TargetCondition: c.TargetCondition, Priority: c.Priority}
		if c.Content != nil {
			hc.Content = &hubapi.ConfigurationContent{}
			var err error
			if hc.Content.DeviceContent, err = normalizeObject(c.Content.DeviceContent); err == nil {
				hc.Content.ModuleContent, err = normalizeObject(c.Content.ModuleContent)
			}
			for k, v := range c.Content.ModulesContent {
				var m map[string]any
				if m, err = normalizeObject(v); err != nil {
					break
				}
				if hc.Content.ModulesContent == nil {
					hc.Content.ModulesContent = map[string]map[string]any{}
				}
				hc.Content.ModulesContent[k] = m
			}
			if err != nil {
				p.add(at(n, "content"), path+".content", "", "configuration %q: %v", c.ID, err)
				continue
			}
		}
		if c.Metrics != nil {
			hc.Metrics = &hubapi.ConfigurationMetrics{Queries: c.Metrics.Queries}
		}
		if _, err := parseConfiguration(&hc); err != nil {
			msg := err.Error()
			var he *hubError
			if errors.As(err, &he) {
				msg = he.msg
			}
			p.add(n, path, "", "%s", msg)
			continue
		}
		if seen[c.ID] {
			p.add(at(n, "id"), path+".id", "give each configuration its own id", "configuration %q is listed twice", c.ID)
			continue
		}
		seen[c.ID] = true
		f.Configurations = append(f.Configurations, hc)
	}
}

// normalizeObject turns a YAML-decoded object into encoding/json shapes; nil stays nil.
func normalizeObject(m map[string]any) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	v, err := normalizeYAML(m)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}
