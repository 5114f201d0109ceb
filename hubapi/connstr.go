package hubapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ConnectionString is a parsed IoT Hub service connection string for a shared access policy. The key
// is kept unexported and never printed: String, GoString and every fmt verb show it as "<redacted>".
type ConnectionString struct {
	HostName string // hub host, optionally with a port (local endpoints such as the emulator)
	KeyName  string // shared access policy, e.g. "iothubowner" or "service"
	key      *secret
}

// secret holds key material behind a pointer, so that even reflection-based printing of a struct that
// embeds it (fmt at depth > 0 prints pointers as addresses) cannot reveal it.
type secret struct{ b []byte }

// redacted stands in for secrets in every printed form.
const redacted = "<redacted>"

// knownParts are the connection-string settings rollout recognises. Settings of device or module
// connection strings are named so that the error can say what kind of string was given.
var knownParts = map[string]string{
	"hostname":              "HostName",
	"sharedaccesskeyname":   "SharedAccessKeyName",
	"sharedaccesskey":       "SharedAccessKey",
	"deviceid":              "DeviceId",
	"moduleid":              "ModuleId",
	"sharedaccesssignature": "SharedAccessSignature",
	"gatewayhostname":       "GatewayHostName",
	"x509":                  "x509",
}

// ParseConnectionString reads `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`. Parts are
// separated by ';' and each is split on its first '=', because base64 keys end in '='. Setting names
// match case-insensitively. An error names the part that is wrong and never repeats the key, nor any
// text that could be part of it.
func ParseConnectionString(s string) (ConnectionString, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ConnectionString{}, errors.New("connection string is empty")
	}
	values := map[string]string{}
	for i, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // a trailing or doubled ';' is harmless
		}
		name, value, ok := strings.Cut(part, "=")
		canon, known := knownParts[strings.ToLower(strings.TrimSpace(name))]
		if !ok || !known {
			// The text of an unrecognised part is not shown: a stray ';' inside a key would make
			// the rest of the key look like a part of its own.
			return ConnectionString{}, fmt.Errorf("connection string: part %d is not a setting rollout knows (want HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)", i+1)
		}
		if _, dup := values[canon]; dup {
			return ConnectionString{}, fmt.Errorf("connection string: %s is given twice", canon)
		}
		values[canon] = strings.TrimSpace(value)
	}
	switch {
	case has(values, "DeviceId"), has(values, "ModuleId"):
		return ConnectionString{}, errors.New("connection string: this is a device connection string (it has DeviceId); rollout needs a service connection string of a shared access policy such as iothubowner or service")
	case has(values, "SharedAccessSignature"):
		return ConnectionString{}, errors.New("connection string: SharedAccessSignature connection strings are not supported; use a policy's SharedAccessKeyName and SharedAccessKey")
	}
	cs := ConnectionString{HostName: values["HostName"], KeyName: values["SharedAccessKeyName"]}
	if err := checkHost(cs.HostName); err != nil {
		return ConnectionString{}, fmt.Errorf("connection string: HostName %w", err)
	}
	if cs.KeyName == "" {
		return ConnectionString{}, errors.New("connection string: SharedAccessKeyName is missing or empty (the shared access policy, e.g. iothubowner)")
	}
	rawKey, ok := values["SharedAccessKey"]
	if !ok || rawKey == "" {
		return ConnectionString{}, errors.New("connection string: SharedAccessKey is missing or empty")
	}
	key, err := base64.StdEncoding.DecodeString(rawKey)
	if err != nil {
		return ConnectionString{}, fmt.Errorf("connection string: SharedAccessKey is not valid base64 (%d characters)", len(rawKey))
	}
	cs.key = &secret{b: key}
	return cs, nil
}

func has(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// checkHost accepts a bare host name or IP address with an optional port; the error completes the
// sentence "HostName ...".
func checkHost(h string) error {
	if h == "" {
		return errors.New("is missing or empty (the hub's host, e.g. myhub.azure-devices.net)")
	}
	if strings.Contains(h, "://") {
		return fmt.Errorf("%q must be a host name without a scheme such as https://", h)
	}
	if strings.ContainsAny(h, "/?#@ \t") {
		return fmt.Errorf("%q must be a host name (optionally with :port), not a URL", h)
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if host == "" {
			return fmt.Errorf("%q has a port but no host", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has an invalid port", h)
		}
	} else if strings.Count(h, ":") == 1 {
		return fmt.Errorf("%q has an invalid port", h)
	}
	return nil
}

// valid reports whether cs came from ParseConnectionString.
func (cs ConnectionString) valid() bool {
	return cs.key != nil && cs.HostName != "" && cs.KeyName != ""
}

// String gives the connection string with the key replaced by "<redacted>".
func (cs ConnectionString) String() string {
	return "HostName=" + cs.HostName + ";SharedAccessKeyName=" + cs.KeyName + ";SharedAccessKey=" + redacted
}

// GoString is the %#v form, with the key redacted.
func (cs ConnectionString) GoString() string {
	return fmt.Sprintf("hubapi.ConnectionString{HostName:%q, KeyName:%q, key:%s}", cs.HostName, cs.KeyName, redacted)
}

// Format makes every fmt verb (%v, %+v, %s, %q, %#v ...) print the redacted form.
func (cs ConnectionString) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, cs.String(), cs.GoString())
}

// formatRedacted prints s for all verbs but %#v (gs) and %q (quoted s).
func formatRedacted(f fmt.State, verb rune, s, gs string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, gs)
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(s))
	default:
		fmt.Fprint(f, s)
	}
}
