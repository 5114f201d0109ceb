package hubapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// TestErrorShapes feeds the client each error form a hub (or a proxy in front of it) can send and checks
// the typed error: status, code, tracking id, message, predicates and retryability.
func TestErrorShapes(t *testing.T) {
	tests := []struct {
		name       string
		reply      reply
		status     int
		code       hubapi.ErrorCode
		tracking   string
		msg        string // substring of Message
		pred       func(error) bool
		retryable  bool
		errContain string // substring of Error()
	}{
		{
			name: "shape A", status: 412, code: hubapi.CodePreconditionFailed, tracking: "e4a9090fbc2f4a78b13ba7a01fb30ffe",
			reply: reply{status: 412, header: map[string]string{"iothub-errorcode": "PreconditionFailed"},
				body: `{"Message":"ErrorCode:PreconditionFailed;Precondition failed: Device version did not match, existingVersion:343060357 newVersion:343060356","ExceptionMessage":"Tracking ID:e4a9090fbc2f4a78b13ba7a01fb30ffe-G:12-TimeStamp:07/07/2021 20:45:26"}`},
			msg: "Device version did not match", pred: hubapi.IsPreconditionFailed,
			errContain: "PreconditionFailed (412001): Precondition failed",
		},
		{
			name: "shape B", status: 404, code: hubapi.CodeDeviceNotOnline, tracking: "abc123",
			reply: reply{status: 404, body: `{"Message":"{\"errorCode\":404103,\"trackingId\":\"abc123\",\"message\":\"The operation failed because the requested device isn't online or hasn't registered the direct method callback.\",\"timestampUtc\":\"2022-10-19T16:47:22.0203257Z\"}","ExceptionMessage":""}`},
			msg:   "isn't online", pred: hubapi.IsDeviceNotOnline, errContain: "DeviceNotOnline (404103)",
		},
		{
			name: "shape B string code", status: 504, code: hubapi.CodeGatewayTimeout, tracking: "t-504",
			reply: reply{status: 504, body: `{"Message":"{\"errorCode\":\"504101\",\"trackingId\":\"t-504\",\"message\":\"Timed out waiting for the response from device.\"}","ExceptionMessage":""}`},
			msg:   "Timed out", pred: hubapi.IsGatewayTimeout,
		},
		{
			name: "header only", status: 404, code: hubapi.CodeDeviceNotFound,
			reply: reply{status: 404, header: map[string]string{"iothub-errorcode": "DeviceNotFound"}},
			msg:   "no error details", pred: hubapi.IsNotFound,
		},
		{
			name: "job already exists", status: 409, code: hubapi.CodeJobAlreadyExists,
			reply: reply{status: 409, header: map[string]string{"iothub-errorcode": "JobAlreadyExists"},
				body: `{"Message":"ErrorCode:JobAlreadyExists;A job with id 'job-1' already exists","ExceptionMessage":"Tracking ID:x1-G:0-TimeStamp:01/01/2026 00:00:00"}`},
			tracking: "x1", msg: "already exists", pred: hubapi.IsAlreadyExists,
		},
		{
			name: "throttled", status: 429, code: hubapi.CodeThrottlingException, retryable: true,
			reply: reply{status: 429, body: `{"Message":"ErrorCode:ThrottlingException;Rate limit exceeded","ExceptionMessage":""}`},
			msg:   "Rate limit", pred: hubapi.IsThrottled, errContain: "throttling",
		},
		{
			name: "max active jobs", status: 429, code: hubapi.CodeThrottlingMaxActiveJobCountExceeded, retryable: true,
			reply: reply{status: 429, body: `{"Message":"ErrorCode:ThrottlingMaxActiveJobCountExceeded;Too many jobs","ExceptionMessage":""}`},
			pred:  hubapi.IsThrottled, errContain: "no more concurrent jobs",
		},
		{
			name: "generic bad request", status: 400, code: hubapi.CodeGenericBadRequest,
			reply: reply{status: 400, body: `{"Message":"ErrorCode:GenericBadRequest;BadRequest","ExceptionMessage":""}`},
			msg:   "BadRequest",
		},
		{
			name: "unknown code name", status: 400, code: hubapi.ErrorCode{Name: "SomethingNew"},
			reply: reply{status: 400, body: `{"Message":"ErrorCode:SomethingNew;new text","ExceptionMessage":""}`},
			msg:   "new text",
		},
		{
			name: "html from a proxy", status: 502, retryable: true,
			reply: reply{status: 502, header: map[string]string{"Content-Type": "text/html"}, body: "<html><body><h1>502 Bad Gateway</h1></body></html>"},
			msg:   "non-JSON error body (text/html", errContain: "HTTP 502 Bad Gateway",
		},
		{
			name: "truncated JSON", status: 500, retryable: true,
			reply: reply{status: 500, body: `{"Message":"ErrorCode:ServerErr`},
			msg:   "unreadable error body",
		},
		{
			name: "plain text message", status: 401, code: hubapi.CodeIotHubUnauthorizedAccess,
			reply: reply{status: 401, header: map[string]string{"iothub-errorcode": "IotHubUnauthorizedAccess"}, body: `{"Message":"Unauthorized"}`},
			msg:   "Unauthorized", errContain: "check the connection string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
			hub.queue(tt.reply)
			if tt.status == 401 {
				hub.queue(tt.reply) // a 401 is retried once with a fresh token
			}
			c := hub.client(hubapi.Options{MaxRetries: -1})
			_, err := c.GetTwin(context.Background(), "dev1")
			var e *hubapi.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not a *hubapi.Error", err, err)
			}
			if e.StatusCode != tt.status || e.Code != tt.code || e.TrackingID != tt.tracking {
				t.Errorf("got status %d code %+v tracking %q; want %d %+v %q", e.StatusCode, e.Code, e.TrackingID, tt.status, tt.code, tt.tracking)
			}
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("Message %q does not contain %q", e.Message, tt.msg)
			}
			if tt.pred != nil && !tt.pred(err) {
				t.Errorf("predicate false for %v", err)
			}
			if e.Retryable() != tt.retryable || hubapi.IsRetryable(err) != tt.retryable {
				t.Errorf("Retryable() = %v, want %v", e.Retryable(), tt.retryable)
			}
			if !strings.Contains(err.Error(), tt.errContain) || !strings.Contains(err.Error(), "GET /twins/dev1") {
				t.Errorf("Error() = %q, want it to contain %q and the operation", err, tt.errContain)
			}
			if tt.tracking != "" && !strings.Contains(err.Error(), tt.tracking) {
				t.Errorf("Error() = %q lacks the tracking id", err)
			}
			assertNoSecret(t, err.Error())
		})
	}
}

// TestPredicatesAreDistinct checks that each predicate is true for its own error only.
func TestPredicatesAreDistinct(t *testing.T) {
	errs := map[string]error{
		"throttled":    &hubapi.Error{StatusCode: 429, Code: hubapi.CodeThrottlingException},
		"notFound":     &hubapi.Error{StatusCode: 404, Code: hubapi.CodeDeviceNotFound},
		"precondition": &hubapi.Error{StatusCode: 412, Code: hubapi.CodePreconditionFailed},
		"notOnline":    &hubapi.Error{StatusCode: 404, Code: hubapi.CodeDeviceNotOnline},
		"gateway":      &hubapi.Error{StatusCode: 504, Code: hubapi.CodeGatewayTimeout},
		"exists":       &hubapi.Error{StatusCode: 409, Code: hubapi.CodeDeviceAlreadyExists},
	}
	preds := map[string]func(error) bool{
		"throttled": hubapi.IsThrottled, "notFound": hubapi.IsNotFound, "precondition": hubapi.IsPreconditionFailed,
		"notOnline": hubapi.IsDeviceNotOnline, "gateway": hubapi.IsGatewayTimeout, "exists": hubapi.IsAlreadyExists,
	}
	for en, err := range errs {
		for pn, p := range preds {
			wrapped := errors.Join(errors.New("context"), err)
			if got := p(wrapped); got != (en == pn) {
				t.Errorf("%s(%s) = %v", pn, en, got)
			}
		}
	}
	if hubapi.IsThrottled(errors.New("plain")) || hubapi.IsRetryable(nil) || hubapi.IsRetryable(context.Canceled) {
		t.Error("predicates must be false for non-hub errors")
	}
	if (&hubapi.Error{StatusCode: 504, Code: hubapi.CodeGatewayTimeout}).Retryable() {
		t.Error("a direct method's GatewayTimeout must not be retryable: the device may have run it")
	}
}

// TestBadSuccessBodies checks that a 200 whose body is not the expected JSON gives a typed error, never
// a panic or a zero value.
func TestBadSuccessBodies(t *testing.T) {
	tests := []struct{ name, body, contentType, want string }{
		{"html", "<html>login</html>", "text/html", "could not be read"},
		{"empty", "", "", "was empty"},
		{"truncated", `{"deviceId":"dev1","etag":"AAA`, "", "could not be read"},
		{"wrong type", `["not","a","twin"]`, "", "could not be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
			hub.queue(reply{status: 200, body: tt.body, header: map[string]string{"Content-Type": tt.contentType}})
			tw, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1")
			var e *hubapi.Error
			if !errors.As(err, &e) || e.StatusCode != 200 || !strings.Contains(e.Message, tt.want) || tw != nil {
				t.Errorf("GetTwin = %v, %v; want a typed error containing %q", tw, err, tt.want)
			}
		})
	}
	// A page that is not an array.
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(ok(`{"unexpected":true}`))
	c := hub.client(hubapi.Options{})
	if _, err := c.Query(context.Background(), "SELECT * FROM devices", 0).NextPage(context.Background()); err == nil {
		t.Error("a page that is an object without items must fail")
	}
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range []string{
		`{"Message":"ErrorCode:PreconditionFailed;x","ExceptionMessage":"Tracking ID:a-G:1-TimeStamp:x"}`,
		`{"Message":"{\"errorCode\":404103,\"trackingId\":\"t\",\"message\":\"m\"}"}`,
		`{"Message":"{\"errorCode\":\"x\"}"}`, `<html>`, ``, `{`, `{"Message":5}`, `{"errorCode":429001}`,
	} {
		f.Add(s)
	}
	hub := newFakeHub(f, hubapitest.NewAutoClock(t0))
	c := hub.client(hubapi.Options{MaxRetries: -1})
	f.Fuzz(func(t *testing.T, body string) {
		hub.queue(reply{status: 400, body: body})
		_, err := c.GetTwin(context.Background(), "d")
		var e *hubapi.Error
		if !errors.As(err, &e) || e.StatusCode != 400 {
			t.Fatalf("body %q gave %v", body, err)
		}
	})
}
