package hubapi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

func unavailable() reply {
	return reply{status: 503, header: map[string]string{"iothub-errorcode": "ServiceUnavailable"},
		body: `{"Message":"ErrorCode:ServiceUnavailable;try later","ExceptionMessage":""}`}
}

func throttled(header map[string]string) reply {
	return reply{status: 429, header: header, body: `{"Message":"ErrorCode:ThrottlingException;slow down","ExceptionMessage":""}`}
}

// TestBackoffTiming checks that 503s are retried with exponential backoff and jitter: the n-th wait lies
// in the upper half of MinBackoff·2ⁿ, capped at MaxBackoff.
func TestBackoffTiming(t *testing.T) {
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	for range 6 {
		hub.queue(unavailable())
	}
	hub.queue(ok(twinJSON))
	c := hub.client(hubapi.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second})
	if _, err := c.GetTwin(context.Background(), "dev1"); err != nil {
		t.Fatal(err)
	}
	if n := len(hub.requests()); n != 7 {
		t.Fatalf("%d requests, want 7", n)
	}
	waits := clock.Waits()
	nominal := []time.Duration{100, 200, 400, 800, 1600, 2000}
	if len(waits) != len(nominal) {
		t.Fatalf("waits %v, want %d", waits, len(nominal))
	}
	for i, w := range waits {
		n := nominal[i] * time.Millisecond
		if w < n/2 || w > n {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, w, n/2, n)
		}
	}
	// The requests arrived at those fake times.
	reqs := hub.requests()
	for i := 1; i < len(reqs); i++ {
		if got := reqs[i].At.Sub(reqs[i-1].At); got != waits[i-1] {
			t.Errorf("request %d came %v after the previous, want %v", i, got, waits[i-1])
		}
	}
}

// TestJitterVaries checks that the jitter is not a constant: two clients retrying in step would
// otherwise hit the hub together again.
func TestJitterVaries(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 8 {
		clock := hubapitest.NewAutoClock(t0)
		hub := newFakeHub(t, clock)
		hub.queue(unavailable(), ok(twinJSON))
		if _, err := hub.client(hubapi.Options{MinBackoff: time.Second}).GetTwin(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
		seen[clock.Waits()[0]] = true
	}
	if len(seen) < 2 {
		t.Errorf("8 first waits all equal: %v", seen)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{"http date", map[string]string{"Retry-After": t0.Add(12 * time.Second).Format(http.TimeFormat)}, 12 * time.Second},
		{"milliseconds", map[string]string{"x-ms-retry-after-ms": "1500"}, 1500 * time.Millisecond},
		{"capped", map[string]string{"Retry-After": "86400"}, 5 * time.Minute},
		{"huge seconds capped, not overflowed", map[string]string{"Retry-After": "1e300"}, 5 * time.Minute},
		{"infinite milliseconds capped", map[string]string{"Retry-After-Ms": "Inf"}, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := hubapitest.NewAutoClock(t0)
			hub := newFakeHub(t, clock)
			hub.queue(throttled(tt.header), ok(twinJSON))
			if _, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1"); err != nil {
				t.Fatal(err)
			}
			if w := clock.Waits(); len(w) != 1 || w[0] != tt.want {
				t.Errorf("waits %v, want [%v]", w, tt.want)
			}
		})
	}
}

// TestRetriesBounded checks MaxRetries and which errors are not retried at all.
func TestRetriesBounded(t *testing.T) {
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	for range 4 {
		hub.queue(unavailable())
	}
	_, err := hub.client(hubapi.Options{MaxRetries: 3}).GetTwin(context.Background(), "dev1")
	var e *hubapi.Error
	if !errors.As(err, &e) || e.StatusCode != 503 || e.Attempts != 4 {
		t.Fatalf("err = %v (attempts %v), want the 503 after 4 attempts", err, e)
	}
	if n := len(hub.requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}

	// The default bound is 8 retries.
	hub = newFakeHub(t, hubapitest.NewAutoClock(t0))
	for range 9 {
		hub.queue(unavailable())
	}
	if _, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1"); err == nil || len(hub.requests()) != 9 {
		t.Errorf("default: %d requests (err %v), want 9", len(hub.requests()), err)
	}

	// Not retryable: 400, 404, 412, 409.
	for _, status := range []int{400, 404, 409, 412} {
		hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
		hub.queue(reply{status: status, body: `{"Message":"ErrorCode:X;no","ExceptionMessage":""}`})
		if _, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1"); err == nil || len(hub.requests()) != 1 {
			t.Errorf("status %d: %d requests (err %v), want 1", status, len(hub.requests()), err)
		}
	}
}

// TestConnectionReset checks that a reset connection is retried for an idempotent call.
func TestConnectionReset(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(reply{reset: true}, reply{reset: true}, ok(twinJSON))
	if _, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1"); err != nil {
		t.Fatal(err)
	}
	if n := len(hub.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestInvokeNotResent checks that a direct method that may have reached the hub is not sent again
// unless RetryInvoke is set, while a throttled or never-sent one is.
func TestInvokeNotResent(t *testing.T) {
	m := &hubapi.CloudToDeviceMethod{MethodName: "reboot"}
	tests := []struct {
		name     string
		retry    bool
		replies  []reply
		requests int
		wantErr  bool
	}{
		{"reset, no retry", false, []reply{{reset: true}}, 1, true},
		{"503, no retry", false, []reply{unavailable()}, 1, true},
		{"gateway timeout", true, []reply{{status: 504, body: `{"Message":"{\"errorCode\":504101,\"message\":\"timeout\"}"}`}}, 1, true},
		{"429 is resent", false, []reply{throttled(nil), ok(`{"status":200,"payload":null}`)}, 2, false},
		{"reset, RetryInvoke", true, []reply{{reset: true}, ok(`{"status":200,"payload":null}`)}, 2, false},
		{"503, RetryInvoke", true, []reply{unavailable(), ok(`{"status":200,"payload":null}`)}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
			hub.queue(tt.replies...)
			_, err := hub.client(hubapi.Options{RetryInvoke: tt.retry}).InvokeMethod(context.Background(), "dev1", m)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
			if n := len(hub.requests()); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
		})
	}
}

// failingDial is a transport whose first n dials fail: the request never leaves the client.
type failingDial struct {
	n     int
	calls int
	next  http.RoundTripper
}

func (f *failingDial) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls++
	if f.calls <= f.n {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return f.next.RoundTrip(r)
}

// TestInvokeNeverSentIsRetried checks that a direct method whose connection could not even be opened
// is retried: it cannot have run.
func TestInvokeNeverSentIsRetried(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(ok(`{"status":200,"payload":null}`))
	tr := &failingDial{n: 2, next: http.DefaultTransport}
	c := hub.client(hubapi.Options{HTTPClient: &http.Client{Transport: tr}})
	if _, err := c.InvokeMethod(context.Background(), "dev1", &hubapi.CloudToDeviceMethod{MethodName: "m"}); err != nil {
		t.Fatal(err)
	}
	if tr.calls != 3 || len(hub.requests()) != 1 {
		t.Errorf("%d attempts, %d reached the hub; want 3 and 1", tr.calls, len(hub.requests()))
	}
}

// TestCancelMidRetry cancels the context while the client waits to retry: the call returns at once
// with an error that is both context.Canceled and the last hub error, and makes no further request.
func TestCancelMidRetry(t *testing.T) {
	clock := hubapitest.NewClock(t0) // manual: the wait blocks until the test advances it
	hub := newFakeHub(t, clock)
	hub.queue(unavailable(), ok(twinJSON))
	c := hub.client(hubapi.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.GetTwin(ctx, "dev1")
		done <- err
	}()
	if !clock.BlockUntil(1, 5*time.Second) {
		t.Fatal("the client never started waiting to retry")
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("GetTwin did not return after cancel")
	}
	var e *hubapi.Error
	if !errors.Is(err, context.Canceled) || !errors.As(err, &e) || e.StatusCode != 503 {
		t.Errorf("err = %v, want context.Canceled carrying the 503", err)
	}
	if n := len(hub.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// TestDeadlineShorterThanRetryAfter checks that a call gives up at once, with the hub's error, when
// Retry-After asks for longer than the context has left.
func TestDeadlineShorterThanRetryAfter(t *testing.T) {
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	hub.queue(throttled(map[string]string{"Retry-After": "120"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := hub.client(hubapi.Options{}).GetTwin(ctx, "dev1")
	if !hubapi.IsThrottled(err) || len(clock.Waits()) != 0 {
		t.Errorf("err = %v, waits %v; want the 429 and no wait", err, clock.Waits())
	}
}

// TestUnauthorizedRefreshesToken checks that a 401 is retried once with a new token, then reported.
func TestUnauthorizedRefreshesToken(t *testing.T) {
	unauthorized := reply{status: 401, header: map[string]string{"iothub-errorcode": "IotHubUnauthorizedAccess"},
		body: `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":""}`}
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(unauthorized, ok(twinJSON))
	if _, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1"); err != nil {
		t.Fatal(err)
	}
	hub = newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(unauthorized, unauthorized, ok(twinJSON))
	_, err := hub.client(hubapi.Options{}).GetTwin(context.Background(), "dev1")
	var e *hubapi.Error
	if !errors.As(err, &e) || e.StatusCode != 401 || e.Attempts != 2 || len(hub.requests()) != 2 {
		t.Errorf("err = %v after %d requests, want the 401 after 2", err, len(hub.requests()))
	}
}

// TestCreateJobAlreadyExistsAfterRetry: a create whose first answer was lost is retried and the hub
// answers 409; the error says so and counts the attempts.
func TestCreateJobAlreadyExistsAfterRetry(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(reply{reset: true}, reply{status: 409, header: map[string]string{"iothub-errorcode": "JobAlreadyExists"}, body: `{"Message":"ErrorCode:JobAlreadyExists;exists","ExceptionMessage":""}`})
	_, err := hub.client(hubapi.Options{}).CreateJob(context.Background(), &hubapi.JobRequest{JobID: "j-1", Type: hubapi.JobTypeDeviceMethod,
		CloudToDeviceMethod: &hubapi.CloudToDeviceMethod{MethodName: "m"}, QueryCondition: "*"})
	var e *hubapi.Error
	if !hubapi.IsAlreadyExists(err) || !errors.As(err, &e) || e.Attempts != 2 {
		t.Errorf("err = %v, want already-exists on attempt 2", err)
	}
}

// TestRetryLog checks that retries are logged, without secrets.
func TestRetryLog(t *testing.T) {
	var buf bytes.Buffer
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(unavailable(), ok(twinJSON))
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := hub.client(hubapi.Options{Logger: logger}).GetTwin(context.Background(), "dev1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "iothub retry") || !strings.Contains(buf.String(), "ServiceUnavailable") {
		t.Errorf("log = %q", buf.String())
	}
	assertNoSecret(t, buf.String())
}
