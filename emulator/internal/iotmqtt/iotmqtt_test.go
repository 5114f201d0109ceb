package iotmqtt

import (
	"testing"
)

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in      string
		want    Username
		wantErr bool
	}{
		{in: "localhost:8883/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node)",
			want: Username{Host: "localhost:8883", DeviceID: "dev1", APIVersion: "2021-04-12", ClientType: "azure-iot-device/1.18.4 (node)"}},
		{in: "hub/dev1/api-version=2016-11-14", want: Username{Host: "hub", DeviceID: "dev1", APIVersion: "2016-11-14"}},
		{in: "hub/dev1/m1/?api-version=2021-04-12&model-id=dtmi:x;1", want: Username{Host: "hub", DeviceID: "dev1", ModuleID: "m1", APIVersion: "2021-04-12", ModelID: "dtmi:x;1"}},
		{in: "hub/dev1", want: Username{Host: "hub", DeviceID: "dev1"}},
		{in: "hub/dev%20one/?api-version=1", want: Username{Host: "hub", DeviceID: "dev one", APIVersion: "1"}},
		{in: "", wantErr: true},
		{in: "hub", wantErr: true},
		{in: "/dev1/?api-version=1", wantErr: true},
		{in: "hub//?api-version=1", wantErr: true},
		{in: "hub/a/b/c/?api-version=1", wantErr: true},
		{in: "hub/dev%zz/?api-version=1", wantErr: true},
		{in: "hub/dev1/?api-version=%zz", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseUsername(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseUsername(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("ParseUsername(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		topic  string
		kind   Kind
		rid    string
		status int
	}{
		{"$iothub/twin/GET/?$rid=1", TwinGet, "1", 0},
		{"$iothub/twin/GET/?$rid=5a1e2c3d-0000", TwinGet, "5a1e2c3d-0000", 0},
		{"$iothub/twin/GET/?x=1&$rid=7", TwinGet, "7", 0},
		{"$iothub/twin/GET/", Unknown, "", 0},
		{"$iothub/twin/GET/?$rid=", Unknown, "", 0},
		{"$iothub/twin/GET?$rid=1", Unknown, "", 0},
		{"$iothub/twin/PATCH/properties/reported/?$rid=9", TwinReported, "9", 0},
		{"$iothub/twin/PATCH/properties/desired/?$rid=9", Unknown, "", 0},
		{"$iothub/methods/res/200/?$rid=3", MethodResponse, "3", 200},
		{"$iothub/methods/res/500/?$rid=3", MethodResponse, "3", 500},
		{"$iothub/methods/res/abc/?$rid=3", Unknown, "", 0},
		{"$iothub/methods/res/-1/?$rid=3", Unknown, "", 0},
		{"$iothub/methods/res/200?$rid=3", Unknown, "", 0},
		{"$iothub/methods/res/200/x/?$rid=3", Unknown, "", 0},
		{"devices/dev1/messages/events/", Telemetry, "", 0},
		{"devices/dev1/messages/events/a=1&%24.ct=application%2Fjson", Telemetry, "", 0},
		{"devices/dev2/messages/events/", Unknown, "", 0},
		{"devices/dev1/messages/events", Unknown, "", 0},
		{"devices/dev1/messages/events/a=%zz", Unknown, "", 0},
		{"anything/else", Unknown, "", 0},
	}
	for _, tt := range tests {
		got := ParsePublish(tt.topic, "dev1", "")
		if got.Kind != tt.kind || got.RID != tt.rid || got.Status != tt.status {
			t.Errorf("ParsePublish(%q) = %+v, want kind %d rid %q status %d", tt.topic, got, tt.kind, tt.rid, tt.status)
		}
	}
	if got := ParsePublish("devices/dev1/modules/m1/messages/events/", "dev1", "m1"); got.Kind != Telemetry {
		t.Errorf("module telemetry = %+v, want Telemetry", got)
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		f    string
		want Subscription
	}{
		{"$iothub/twin/res/#", SubTwinRes},
		{"$iothub/twin/PATCH/properties/desired/#", SubDesired},
		{"$iothub/methods/POST/#", SubMethods},
		{"devices/dev1/messages/devicebound/#", SubC2D},
		{"devices/dev2/messages/devicebound/#", SubNone},
		{"devices/+/messages/devicebound/#", SubNone},
		{"#", SubNone},
		{"$iothub/#", SubNone},
	}
	for _, tt := range tests {
		if got := ParseFilter(tt.f, "dev1", ""); got != tt.want {
			t.Errorf("ParseFilter(%q) = %d, want %d", tt.f, got, tt.want)
		}
	}
}

func TestResponseTopicsParseBack(t *testing.T) {
	if got, want := TwinResponse(204, "ab-1", 7), "$iothub/twin/res/204/?$rid=ab-1&$version=7"; got != want {
		t.Errorf("TwinResponse = %q, want %q", got, want)
	}
	if got, want := TwinResponse(200, "1", 0), "$iothub/twin/res/200/?$rid=1"; got != want {
		t.Errorf("TwinResponse = %q, want %q", got, want)
	}
	if got, want := DesiredPatch(3), "$iothub/twin/PATCH/properties/desired/?$version=3"; got != want {
		t.Errorf("DesiredPatch = %q, want %q", got, want)
	}
	if got, want := MethodRequest("reboot", "12"), "$iothub/methods/POST/reboot/?$rid=12"; got != want {
		t.Errorf("MethodRequest = %q, want %q", got, want)
	}
}
