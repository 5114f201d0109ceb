package hubapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// testKey is base64 of "secret-key-for-tests-only-12345678"; its decoded and encoded forms must never
// appear in printed output.
const testKey = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY3OA=="

func testConnString(host string) string {
	return "HostName=" + host + ";SharedAccessKeyName=iothubowner;SharedAccessKey=" + testKey
}

func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		in, host, keyName string
	}{
		{testConnString("myhub.azure-devices.net"), "myhub.azure-devices.net", "iothubowner"},
		{"hostname=h.example;sharedaccesskeyname=service;sharedaccesskey=" + testKey + ";", "h.example", "service"},
		{" SharedAccessKey=" + testKey + " ; HostName=127.0.0.1:8443 ;SharedAccessKeyName=p ", "127.0.0.1:8443", "p"},
		{"HostName=FakeHost.net;SharedAccessKeyName=iothubowner;SharedAccessKey=Kg==", "FakeHost.net", "iothubowner"},
	}
	for _, tt := range tests {
		cs, err := hubapi.ParseConnectionString(tt.in)
		if err != nil {
			t.Errorf("ParseConnectionString(%q): %v", tt.in, err)
			continue
		}
		if cs.HostName != tt.host || cs.KeyName != tt.keyName {
			t.Errorf("ParseConnectionString(%q) = %q, %q; want %q, %q", tt.in, cs.HostName, cs.KeyName, tt.host, tt.keyName)
		}
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	// Each bad string must name what is wrong and must not contain the key, or a fragment of it.
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"no host", "SharedAccessKeyName=p;SharedAccessKey=" + testKey, "HostName is missing"},
		{"scheme", testConnString("https://h.example"), "without a scheme"},
		{"url", testConnString("h.example/path"), "not a URL"},
		{"bad port", testConnString("h.example:99999"), "invalid port"},
		{"no policy", "HostName=h;SharedAccessKey=" + testKey, "SharedAccessKeyName is missing"},
		{"no key", "HostName=h;SharedAccessKeyName=p", "SharedAccessKey is missing"},
		{"empty key", "HostName=h;SharedAccessKeyName=p;SharedAccessKey=", "SharedAccessKey is missing"},
		{"bad base64", "HostName=h;SharedAccessKeyName=p;SharedAccessKey=" + testKey[:20] + "!!" + testKey[22:], "not valid base64"},
		{"key split by ;", "HostName=h;SharedAccessKeyName=p;SharedAccessKey=" + testKey[:10] + ";" + testKey[10:], "part 4"},
		{"no equals", "HostName=h;SharedAccessKeyName=p;" + testKey, "part 3"},
		{"twice", testConnString("h") + ";HostName=x", "HostName is given twice"},
		{"device string", "HostName=h;DeviceId=d1;SharedAccessKey=" + testKey, "device connection string"},
		{"sas string", "HostName=h;SharedAccessSignature=SharedAccessSignature sr=h&sig=" + testKey, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hubapi.ParseConnectionString(tt.in)
			if err == nil {
				t.Fatalf("ParseConnectionString(%q) succeeded, want an error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
}

func TestSASToken(t *testing.T) {
	// Expected tokens computed independently (Python hmac/base64/urllib.parse.quote) from the recipe of
	// iothub-rest.md §7.1.
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct{ host, want string }{
		{"myhub.azure-devices.net", "SharedAccessSignature sr=myhub.azure-devices.net&sig=NGhCa8TDsB2zKJiX4lxpoEHa1Z2XGeILNoRk2QNkA6I%3D&se=1767225600&skn=iothubowner"},
		{"127.0.0.1:8443", "SharedAccessSignature sr=127.0.0.1%3A8443&sig=OiFplHtX8aXY%2FI%2FuJC%2Bm7nx98bxdQ4lPROJ2xlmZz%2F4%3D&se=1767225600&skn=iothubowner"},
		{"MyHub.Azure-Devices.NET", "SharedAccessSignature sr=myhub.azure-devices.net&sig=NGhCa8TDsB2zKJiX4lxpoEHa1Z2XGeILNoRk2QNkA6I%3D&se=1767225600&skn=iothubowner"},
	}
	for _, tt := range tests {
		cs, err := hubapi.ParseConnectionString(testConnString(tt.host))
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.SASToken(exp); got != tt.want {
			t.Errorf("SASToken(%s)\n got %s\nwant %s", tt.host, got, tt.want)
		}
	}
}

func TestConnectionStringRedacted(t *testing.T) {
	cs, err := hubapi.ParseConnectionString(testConnString("myhub.azure-devices.net"))
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		CS  hubapi.ConnectionString
		Ptr *hubapi.ConnectionString
		cs  hubapi.ConnectionString // unexported: printed by reflection, without methods
	}
	h := holder{cs, &cs, cs}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%T %v"} {
		for _, v := range []any{cs, &cs, h, &h, []any{cs}} {
			out := fmt.Sprintf(verb, v)
			assertNoSecret(t, out)
		}
	}
	if got, want := cs.String(), "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=<redacted>"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := fmt.Sprintf("%#v", cs); !strings.Contains(got, `HostName:"myhub.azure-devices.net"`) || !strings.Contains(got, "<redacted>") {
		t.Errorf("%%#v = %s, want the host and <redacted>", got)
	}
}

// secretFragments are substrings that would reveal the test key: its base64 text, its decoded bytes, and
// pieces of either (as a URL-encoded or truncated copy would carry).
var secretFragments = []string{testKey, testKey[:12], testKey[20:32], "secret-key-for", "tests-only-1234", "c2VjcmV0"}

// assertNoSecret fails when s holds any part of the test key or a signature or token made from it.
func assertNoSecret(t testing.TB, s string) {
	t.Helper()
	for _, f := range secretFragments {
		if strings.Contains(s, f) {
			t.Errorf("output reveals key material %q: %s", f, s)
		}
	}
	for _, f := range []string{"sig=", "SharedAccessSignature sr", "Bearer ", stubToken} {
		if strings.Contains(s, f) {
			t.Errorf("output reveals a token (%q): %s", f, s)
		}
	}
}

// FuzzParseConnectionString: parsing never panics, and neither an error nor String() of a parsed
// value ever contains the text given as the key.
func FuzzParseConnectionString(f *testing.F) {
	for _, s := range []string{
		testConnString("h.example"), "HostName=h;SharedAccessKeyName=p;SharedAccessKey=Kg==", ";;;", "=", "HostName",
		"HostName=h:0;SharedAccessKeyName=p;SharedAccessKey=Kg==", "hostname=[::1]:443;sharedaccesskeyname=p;sharedaccesskey=AAAA",
		"HostName=h;SharedAccessKeyName=p;SharedAccessKey=abc;def==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := hubapi.ParseConnectionString(s)
		key := ""
		for _, part := range strings.Split(s, ";") {
			if name, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(name), "SharedAccessKey") {
				key = strings.TrimSpace(v)
			}
		}
		if len(key) < 6 || strings.Count(s, key) > 1 {
			return // too short, or also given as another part: a leak could not be told from a coincidence
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Fatalf("error %q echoes the key", err)
		}
		if err == nil && (strings.Contains(cs.String(), key) || strings.Contains(fmt.Sprintf("%+v %#v", cs, cs), key)) {
			t.Fatalf("printed form echoes the key")
		}
	})
}
