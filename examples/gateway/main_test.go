package main

import (
	"strings"
	"testing"
)

// TestParse checks that every incomplete or malformed command line is refused with a message
// naming what is wrong, and that a good one is read whole.
func TestParse(t *testing.T) {
	const key = "c2VjcmV0LWtleS1vZi10aGUtZGV2aWNlLTEyMzQ1Njc4OTA="
	good := "HostName=127.0.0.1:8443;DeviceId=gw-1;SharedAccessKey=" + key
	for _, tt := range []struct {
		name string
		args []string
		want string // in the error; "" for none
	}{
		{"no connection string", nil, "no connection string"},
		{"no key", []string{"--connection-string", "HostName=h;DeviceId=d"}, "needs HostName, DeviceId and SharedAccessKey"},
		{"key not base64", []string{"--connection-string", "HostName=h;DeviceId=d;SharedAccessKey=%%%"}, "not base64"},
		{"missing CA file", []string{"--connection-string", good, "--ca-file", "/nonexistent/ca.pem"}, "no such file"},
		{"extra argument", []string{"--connection-string", good, "extra"}, `unexpected argument "extra"`},
		{"good", []string{"--connection-string", good, "--supports", "A, B ,C"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DEVICE_CONNECTION_STRING", "")
			c, err := parse(tt.args)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want one saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "127.0.0.1:8443" || c.deviceID != "gw-1" || c.broker != "127.0.0.1:8883" || len(c.key) == 0 ||
				!c.supports["A"] || !c.supports["B"] || !c.supports["C"] || c.profile != "A" {
				t.Errorf("config %+v", c)
			}
		})
	}
}

func TestMethodRequest(t *testing.T) {
	for topic, want := range map[string]string{
		"$iothub/methods/POST/applyProfile/?$rid=7":   "applyProfile 7",
		"$iothub/methods/POST/m/?x=1&$rid=ab":         "m ab",
		"$iothub/methods/POST/applyProfile/?$rid=":    "",
		"$iothub/methods/POST/applyProfile":           "",
		"$iothub/twin/PATCH/properties/desired/?$v=1": "",
	} {
		name, rid, ok := methodRequest(topic)
		got := ""
		if ok {
			got = name + " " + rid
		}
		if got != want {
			t.Errorf("methodRequest(%q) = %q, want %q", topic, got, want)
		}
	}
}
