package emulator

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Fleet is a parsed fleet file: generated groups of devices that share tags, properties and behaviour,
// plus explicitly written twins.
type Fleet struct {
	Name     string   // the file name, for messages
	Defaults Behavior // behaviour of explicit devices without their own and of devices created at run time
	Groups   []Group
	Devices  []DeviceSpec
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

type fleetFile struct {
	Defaults *struct {
		Behavior *behaviorYAML `yaml:"behavior"`
	} `yaml:"defaults"`
	Groups  []groupYAML  `yaml:"groups"`
	Devices []deviceYAML `yaml:"devices"`
}

type groupYAML struct {
	Name     string         `yaml:"name"`
	Count    *int           `yaml:"count"`
	IDPrefix *string        `yaml:"idPrefix"`
	Tags     map[string]any `yaml:"tags"`
	Desired  map[string]any `yaml:"desired"`
	Reported map[string]any `yaml:"reported"`
	Behavior *behaviorYAML  `yaml:"behavior"`
}

func (g *groupYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain groupYAML
	return decodeStrict(n, (*plain)(g))
}

type deviceYAML struct {
	DeviceID        string `yaml:"deviceId"`
	Status          string `yaml:"status"`
	StatusReason    string `yaml:"statusReason"`
	ConnectionState string `yaml:"connectionState"`
	ModelID         string `yaml:"modelId"`
	Capabilities    *struct {
		IoTEdge bool `yaml:"iotEdge"`
	} `yaml:"capabilities"`
	AuthenticationType string         `yaml:"authenticationType"`
	Tags               map[string]any `yaml:"tags"`
	Properties         *struct {
		Desired  map[string]any `yaml:"desired"`
		Reported map[string]any `yaml:"reported"`
	} `yaml:"properties"`
	Behavior *behaviorYAML `yaml:"behavior"`
	// Read-only twin fields, accepted so that a twin copied from a hub can be pasted as it is; the
	// emulator keeps its own.
	ETag                      any `yaml:"etag"`
	DeviceETag                any `yaml:"deviceEtag"`
	Version                   any `yaml:"version"`
	StatusUpdateTime          any `yaml:"statusUpdateTime"`
	LastActivityTime          any `yaml:"lastActivityTime"`
	CloudToDeviceMessageCount any `yaml:"cloudToDeviceMessageCount"`
	X509Thumbprint            any `yaml:"x509Thumbprint"`
	DeviceScope               any `yaml:"deviceScope"`
	ParentScopes              any `yaml:"parentScopes"`
}

func (d *deviceYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain deviceYAML
	return decodeStrict(n, (*plain)(d))
}

type behaviorYAML struct {
	Offline       *share    `yaml:"offline"`
	MethodFailure *share    `yaml:"methodFailure"`
	MethodTimeout *share    `yaml:"methodTimeout"`
	MethodLatency *duration `yaml:"methodLatency"`
	Converge      *struct {
		Delay   *duration `yaml:"delay"`
		Failure *share    `yaml:"failure"`
	} `yaml:"converge"`
	Driver *driver `yaml:"driver"`
}

// driver is who drives a device: "simulated" (the default) or "external", a real client.
type driver bool

func (d *driver) UnmarshalYAML(n *yaml.Node) error {
	switch n.Value {
	case "simulated":
		*d = false
	case "external":
		*d = true
	default:
		return fmt.Errorf("line %d: driver %q is not simulated or external", n.Line, n.Value)
	}
	return nil
}

// apply overrides b's fields with those the YAML sets.
func (y *behaviorYAML) apply(b Behavior) Behavior {
	if y == nil {
		return b
	}
	if y.Offline != nil {
		b.Offline = float64(*y.Offline)
	}
	if y.MethodFailure != nil {
		b.MethodFailure = float64(*y.MethodFailure)
	}
	if y.MethodTimeout != nil {
		b.MethodTimeout = float64(*y.MethodTimeout)
	}
	if y.MethodLatency != nil {
		b.MethodLatency = time.Duration(*y.MethodLatency)
	}
	if y.Driver != nil {
		b.External = bool(*y.Driver)
	}
	if y.Converge != nil {
		if y.Converge.Delay != nil {
			b.ConvergeDelay = time.Duration(*y.Converge.Delay)
		}
		if y.Converge.Failure != nil {
			b.ConvergeFailure = float64(*y.Converge.Failure)
		}
	}
	return b
}

// share is a fraction written as a percentage ("5%", "0.5%") or as a plain fraction in [0, 1].
type share float64

func (s *share) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseShare(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a share: write a percentage such as 5%%", n.Line, n.Value)
	}
	*s = share(v)
	return nil
}

// ParseShare reads a share written as a percentage ("5%") or a fraction in [0, 1] ("0.05").
func ParseShare(s string) (float64, error) {
	s = strings.TrimSpace(s)
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a share: write a percentage such as 5%%", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("share %q is outside 0%%..100%%", s)
	}
	return v, nil
}

// duration is a Go duration string ("20ms", "2s"); a bare 0 is allowed.
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 20ms or 2s", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

func decodeStrict(n *yaml.Node, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// Line numbers of the re-encoded node are relative to it; point at the node instead.
		return fmt.Errorf("line %d: %s", n.Line, stripYAMLLine(err.Error()))
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line \d+: `)

func stripYAMLLine(s string) string {
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	return yamlLineRE.ReplaceAllString(s, "")
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
		if ok {
			f.Devices = append(f.Devices, spec)
		}
	}
}

var goTypeRE = regexp.MustCompile("cannot unmarshal !!(\\w+) (`[^`]*` )?into \\S+")

// decodeMessage rewords a yaml.v3 decoding error without Go type names.
func decodeMessage(err error) string {
	msg := stripYAMLLine(err.Error())
	return goTypeRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := goTypeRE.FindStringSubmatch(m)
		kinds := map[string]string{"str": "text", "int": "a number", "float": "a number", "bool": "true or false", "map": "a mapping", "seq": "a list", "null": "nothing"}
		k, ok := kinds[sub[1]]
		if !ok {
			k = "a value"
		}
		return fmt.Sprintf("found %s%s where something else is expected", k, strings.TrimSuffix(" "+sub[2], " "))
	})
}

// normalizeSection turns a YAML-decoded object into encoding/json shapes (float64 numbers,
// map[string]any objects) and checks it against the twin rules.
func normalizeSection(m map[string]any, limit int) (map[string]any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	v, err := normalizeYAML(m)
	if err != nil {
		return nil, err
	}
	out := stripSystemKeys(v.(map[string]any)) // $metadata and $version of a pasted twin
	if err := validateSection(out, false, limit); err != nil {
		return nil, err
	}
	return out, nil
}

func normalizeYAML(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeYAML(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			n, err := normalizeYAML(e)
			if err != nil {
				return nil, err
			}
			out[ks] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeYAML(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	default:
		return nil, fmt.Errorf("value %v cannot be stored in a twin", x)
	}
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
