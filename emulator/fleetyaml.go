package emulator

// This file holds the fleet file's YAML shapes and their decoding: the types yaml.v3 fills, strictly,
// and the errors it gives turned into words without Go type names.

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

type fleetFile struct {
	Defaults *struct {
		Behavior *behaviorYAML `yaml:"behavior"`
	} `yaml:"defaults"`
	Groups         []groupYAML  `yaml:"groups"`
	Devices        []deviceYAML `yaml:"devices"`
	Configurations []configYAML `yaml:"configurations"`
}

type configYAML struct {
	ID            string            `yaml:"id"`
	SchemaVersion string            `yaml:"schemaVersion"`
	Labels        map[string]string `yaml:"labels"`
	Content       *struct {
		DeviceContent  map[string]any            `yaml:"deviceContent"`
		ModulesContent map[string]map[string]any `yaml:"modulesContent"`
		ModuleContent  map[string]any            `yaml:"moduleContent"`
	} `yaml:"content"`
	TargetCondition string `yaml:"targetCondition"`
	Priority        int32  `yaml:"priority"`
	Metrics         *struct {
		Queries map[string]string `yaml:"queries"`
	} `yaml:"metrics"`
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
	Modules  []moduleYAML  `yaml:"modules"`
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

type moduleYAML struct {
	ModuleID   string         `yaml:"moduleId"`
	ManagedBy  string         `yaml:"managedBy"`
	ModelID    string         `yaml:"modelId"`
	Tags       map[string]any `yaml:"tags"`
	Properties *struct {
		Desired  map[string]any `yaml:"desired"`
		Reported map[string]any `yaml:"reported"`
	} `yaml:"properties"`
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
	Driver      *driver   `yaml:"driver"`
	OnlineAfter *duration `yaml:"onlineAfter"`
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
	if y.OnlineAfter != nil {
		b.OnlineAfter = time.Duration(*y.OnlineAfter)
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
