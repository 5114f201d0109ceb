package iotmqtt

import (
	"strings"
	"testing"
)

// FuzzParseUsername checks that any username either fails or names a non-empty host and device.
func FuzzParseUsername(f *testing.F) {
	f.Add("localhost:8883/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4")
	f.Add("hub/dev1/m1/?api-version=2021-04-12&model-id=dtmi:x;1")
	f.Add("hub/dev1/api-version=2016-11-14")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			return
		}
		if u.Host == "" || u.DeviceID == "" {
			t.Fatalf("ParseUsername(%q) = %+v: accepted without a host or device", s, u)
		}
	})
}

// FuzzParsePublish checks that a topic the parser accepts carries what its kind needs, and that the
// hub's answer to a request names the request id the client sent.
func FuzzParsePublish(f *testing.F) {
	f.Add("$iothub/twin/GET/?$rid=1")
	f.Add("$iothub/twin/PATCH/properties/reported/?$rid=abc")
	f.Add("$iothub/methods/res/200/?$rid=3")
	f.Add("devices/dev1/messages/events/a=1&b=2")
	f.Fuzz(func(t *testing.T, topic string) {
		p := ParsePublish(topic, "dev1", "")
		switch p.Kind {
		case TwinGet, TwinReported, MethodResponse:
			if p.RID == "" || strings.ContainsAny(p.RID, "/&") {
				t.Fatalf("ParsePublish(%q) = %+v: a request without a usable $rid", topic, p)
			}
			answer := TwinResponse(200, p.RID, 0)
			if !strings.HasSuffix(answer, "/?$rid="+p.RID) {
				t.Fatalf("answer %q does not echo $rid %q", answer, p.RID)
			}
		case Telemetry:
			if !strings.HasPrefix(topic, "devices/dev1/messages/events/") {
				t.Fatalf("ParsePublish(%q): telemetry on another identity's topic", topic)
			}
		case Unknown:
		default:
			t.Fatalf("ParsePublish(%q): kind %d", topic, p.Kind)
		}
	})
}

// FuzzParseFilter checks that a filter the parser accepts is exactly one the hub serves: the
// $iothub/ filters with no wildcard but the final '#', and cloud-to-device messages only on the
// connected device's own topic (whose id may itself hold '#' or '+', as IoT Hub device ids may).
func FuzzParseFilter(f *testing.F) {
	f.Add("$iothub/methods/POST/#", "dev1", "")
	f.Add("devices/dev1/messages/devicebound/#", "dev1", "")
	f.Add("devices/dev1/messages/devicebound/#", "dev1", "m1")
	f.Add("devices/+/messages/devicebound/#", "dev1", "")
	f.Add("#", "dev1", "")
	f.Fuzz(func(t *testing.T, filter, deviceID, moduleID string) {
		switch s := ParseFilter(filter, deviceID, moduleID); s {
		case SubNone:
		case SubTwinRes, SubDesired, SubMethods:
			if !strings.HasPrefix(filter, "$iothub/") || !strings.HasSuffix(filter, "/#") || strings.ContainsAny(filter[:len(filter)-1], "#+") {
				t.Fatalf("ParseFilter(%q) = %d: not one of the hub's $iothub/ filters", filter, s)
			}
		case SubC2D:
			if moduleID != "" || filter != "devices/"+deviceID+"/messages/devicebound/#" {
				t.Fatalf("ParseFilter(%q, %q, %q): cloud-to-device messages of another identity", filter, deviceID, moduleID)
			}
		default:
			t.Fatalf("ParseFilter(%q): kind %d", filter, s)
		}
	})
}
