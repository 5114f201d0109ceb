package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// DevelopmentPolicyName and DevelopmentPolicyKey are the emulator's documented development credentials,
// the way Azurite has a well-known storage account: they protect nothing and are meant to be published.
// Override them with Options.PolicyName and Options.PolicyKey.
const (
	DevelopmentPolicyName = "iothubowner"
	DevelopmentPolicyKey  = "cm9sbG91dC1lbXVsYXRvci1kZXZlbG9wbWVudC1rZXk="
)

// maxClockSkew is how far past its expiry a token is still accepted, as the C# SDK's parser allows.
const maxClockSkew = 5 * time.Minute

// authenticator verifies SAS tokens against the one shared access policy the emulator has (reference
// iothub-rest.md §7.1).
type authenticator struct {
	policy string
	key    []byte
	hosts  map[string]bool // lower-case host names a token's sr may name
	port   string          // the listening port; an sr with a port must name this one or 443
	ports  map[string]bool // further ports an sr may name: the MQTT listener's and 8883
	now    func() time.Time
}

// verify checks an Authorization header and returns nil or a 401 hub error. The error never echoes the
// token.
func (a *authenticator) verify(header string) error {
	deny := func(msg string) error { return hubErr(hubapi.CodeIotHubUnauthorizedAccess, "%s", msg) }
	if header == "" {
		return deny("Missing authorization header")
	}
	fields, why := parseSAS(header)
	if why != "" {
		return deny(why)
	}
	name, err := url.QueryUnescape(fields["skn"])
	if err != nil || name != a.policy {
		return deny("The shared access policy named in the token does not exist")
	}
	if _, why := a.checkSigned(fields, [][]byte{a.key}, "the shared access policy"); why != "" {
		return deny(why)
	}
	return nil
}

// checkSigned checks a token's fields (see parseSAS): signed with one of keys (signer names them in
// the message), not expired, its resource on this hub. It returns the resource, or why it fails.
func (a *authenticator) checkSigned(fields map[string]string, keys [][]byte, signer string) (resource, why string) {
	sr, se := fields["sr"], fields["se"]
	sig, err := url.QueryUnescape(fields["sig"])
	if err != nil {
		return "", "Malformed signature"
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return "", "Malformed signature"
	}
	valid := false
	for _, key := range keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(sr + "\n" + se))
		if subtle.ConstantTimeCompare(mac.Sum(nil), got) == 1 {
			valid = true
		}
	}
	if !valid {
		return "", "The token's signature is not valid for " + signer
	}
	exp, err := strconv.ParseInt(se, 10, 64)
	if err != nil {
		return "", "Malformed expiry"
	}
	if a.now().Add(-maxClockSkew).Unix() > exp {
		return "", "The SharedAccessSignature token has expired"
	}
	res, err := url.QueryUnescape(sr)
	if err != nil || !a.hostMatches(res) {
		return "", "The token's resource does not name this hub"
	}
	return res, ""
}

// hostMatches reports whether a token's resource names this hub: a host name we answer to, with or
// without our port, optionally followed by a path (hub-level tokens cover every path).
func (a *authenticator) hostMatches(res string) bool {
	res = strings.ToLower(res)
	res = strings.TrimPrefix(strings.TrimPrefix(res, "https://"), "http://")
	hostport, _, _ := strings.Cut(res, "/")
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	if port != "" && port != a.port && port != "443" && !a.ports[port] {
		return false
	}
	return a.hosts[strings.Trim(host, "[]")]
}

// signToken makes a SAS token for the policy, for connection strings' users and tests.
func signToken(host, policy string, key []byte, expiry time.Time) string {
	sr := url.QueryEscape(host)
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(sr + "\n" + se))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se + "&skn=" + url.QueryEscape(policy)
}

// deviceToken is what a verified device CONNECT password grants: the expiry the connection is closed
// at.
type deviceToken struct {
	expiry time.Time
}

// verifyDevice checks a device's or module's SAS token (a CONNECT password) for its resource
// (devices/{deviceId}, or devices/{deviceId}/modules/{moduleId}): signed with one of the identity's
// keys and no skn, its sr naming {host}/{resource}; or signed by the hub's policy (skn set), its sr
// covering the resource. keys are the identity's base64 keys. The error never echoes the token.
func (a *authenticator) verifyDevice(password, resource string, keys ...string) (deviceToken, error) {
	deny := func(msg string) (deviceToken, error) {
		return deviceToken{}, hubErr(hubapi.CodeIotHubUnauthorizedAccess, "%s", msg)
	}
	fields, why := parseSAS(password)
	if why != "" {
		return deny(why)
	}
	skn := fields["skn"]
	var candidates [][]byte
	if skn != "" {
		name, err := url.QueryUnescape(skn)
		if err != nil || name != a.policy {
			return deny("The shared access policy named in the token does not exist")
		}
		candidates = append(candidates, a.key)
	} else {
		for _, k := range keys {
			if b, err := base64.StdEncoding.DecodeString(k); err == nil && len(b) > 0 {
				candidates = append(candidates, b)
			}
		}
	}
	res, why := a.checkSigned(fields, candidates, "the device")
	if why != "" {
		return deny(why)
	}
	// Resource URIs are prefixes by segment: an identity's key covers exactly its identity; the policy
	// may sign for any prefix of it (the hub, all devices, the device of a module).
	_, path, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(res, "https://"), "http://"), "/")
	path = strings.TrimSuffix(path, "/")
	if path != resource && (skn == "" || (path != "" && !strings.HasPrefix(resource, path+"/"))) {
		return deny("The token's resource does not cover the device")
	}
	exp, _ := strconv.ParseInt(fields["se"], 10, 64) // checkSigned read it
	return deviceToken{expiry: time.Unix(exp, 0).Add(maxClockSkew)}, nil
}

// parseSAS splits a "SharedAccessSignature k=v&k=v" token into its fields; why says, without echoing
// the token, what is wrong when it is not one or lacks sr, sig or se.
func parseSAS(token string) (fields map[string]string, why string) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(token), " ")
	if !ok || scheme != "SharedAccessSignature" {
		return nil, "Only SharedAccessSignature authorization is supported by the emulator"
	}
	fields = map[string]string{}
	for _, part := range strings.Split(strings.TrimSpace(rest), "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, "Malformed SharedAccessSignature"
		}
		fields[k] = v
	}
	if fields["sr"] == "" || fields["sig"] == "" || fields["se"] == "" {
		return nil, "Malformed SharedAccessSignature: sr, sig and se are required"
	}
	return fields, ""
}
