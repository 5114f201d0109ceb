package hubapi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/emulator/emulatortest"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// TestProbeEmulator: against the emulator, Probe is a swagger operation (the transport checks it) and
// learns the emulated tier, which gives the quotas to pace to.
func TestProbeEmulator(t *testing.T) {
	for _, tt := range []struct {
		tier  string
		units int
		want  hubapi.HubInfo
		jobs  int
	}{
		{"S1", 1, hubapi.HubInfo{Tier: "S1", Units: 1}, 1},
		{"S3", 10, hubapi.HubInfo{Tier: "S3", Units: 10}, 10},
		{"", 0, hubapi.HubInfo{Tier: "unlimited", Units: 1}, 0},
	} {
		t.Run(tt.want.Tier, func(t *testing.T) {
			c, _, tr := emuClient(t, emulator.Options{Tier: tt.tier, Units: tt.units})
			info, err := c.Probe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info != tt.want {
				t.Errorf("Probe = %+v, want %+v", info, tt.want)
			}
			if n := tr.count.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			q, err := info.Quotas()
			if err != nil || q == nil {
				t.Fatalf("Quotas() = %v, %v", q, err)
			}
			want, _ := hubapi.TierQuotas(tt.want.Tier, tt.want.Units)
			if *q != want {
				t.Errorf("Quotas() = %+v, want %+v", *q, want)
			}
			if tt.jobs > 0 && q.ConcurrentJobs != tt.jobs {
				t.Errorf("%d concurrent jobs, want %d", q.ConcurrentJobs, tt.jobs)
			}
		})
	}
}

// TestProbeRealHub: a hub that states no tier, as a real IoT Hub, gives Tier "" and no quotas.
func TestProbeRealHub(t *testing.T) {
	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(ok(`{"totalDeviceCount":3,"enabledDeviceCount":3,"disabledDeviceCount":0}`))
	info, err := hub.client(hubapi.Options{}).Probe(context.Background())
	if err != nil || info != (hubapi.HubInfo{}) {
		t.Fatalf("Probe = %+v, %v; want the zero HubInfo", info, err)
	}
	if q, err := info.Quotas(); q != nil || err != nil {
		t.Errorf("Quotas() = %+v, %v; want nil, nil", q, err)
	}
	reqs := hub.requests()
	if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/statistics/devices" {
		t.Errorf("requests %+v, want one GET /statistics/devices", reqs)
	}
}

// TestProbeFallback: a policy without registry read is refused /statistics/devices; Probe then asks
// /statistics/service, which service connect allows. When both are refused the first refusal is the
// error.
func TestProbeFallback(t *testing.T) {
	unauthorized := reply{status: 401, header: map[string]string{"iothub-errorcode": "IotHubUnauthorizedAccess"},
		body: `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":""}`}
	forbidden := reply{status: 403, body: `{"Message":"ErrorCode:IotHubQuotaExceeded;no","ExceptionMessage":""}`}
	service := reply{status: 200, header: map[string]string{hubapi.HeaderEmulatorTier: "S2", hubapi.HeaderEmulatorUnits: "x"},
		body: `{"connectedDeviceCount":2}`}

	hub := newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(forbidden, service)
	info, err := hub.client(hubapi.Options{}).Probe(context.Background())
	if err != nil || info != (hubapi.HubInfo{Tier: "S2", Units: 1}) {
		t.Errorf("after a 403: Probe = %+v, %v; want S2 with 1 unit (unreadable units)", info, err)
	}
	if reqs := hub.requests(); len(reqs) != 2 || reqs[1].Path != "/statistics/service" {
		t.Errorf("requests %+v, want /statistics/devices then /statistics/service", reqs)
	}

	hub = newFakeHub(t, hubapitest.NewAutoClock(t0))
	hub.queue(unauthorized, unauthorized, unauthorized, unauthorized) // each once more with a new token
	_, err = hub.client(hubapi.Options{}).Probe(context.Background())
	var e *hubapi.Error
	if !errors.As(err, &e) || e.StatusCode != 401 || !strings.Contains(e.Op, "/statistics/devices") {
		t.Errorf("both refused: err = %v, want the 401 of /statistics/devices", err)
	}
	assertNoSecret(t, fmt.Sprintf("%v %+v", err, err))
}

// dnsFailure is a transport that fails every dial as a resolver does for an unknown name.
type dnsFailure struct{ dials int }

func (d *dnsFailure) client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
		d.dials++
		host, _, _ := net.SplitHostPort(addr)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: host, Server: "10.0.0.53:53", IsNotFound: true}}
	}}}
}

// TestNoSuchHost: a host name that does not resolve fails after one attempt, naming the host and what
// to check, and not the key.
func TestNoSuchHost(t *testing.T) {
	for _, probe := range []bool{true, false} {
		clock := hubapitest.NewAutoClock(t0)
		d := &dnsFailure{}
		c, err := hubapi.NewFromConnectionString(testConnString("hub.example"), hubapi.Options{HTTPClient: d.client(), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		if probe {
			_, err = c.Probe(context.Background())
		} else {
			_, err = c.InvokeMethod(context.Background(), "dev1", &hubapi.CloudToDeviceMethod{MethodName: "m"})
		}
		const want = `iothub: hub host "hub.example" does not resolve (no such host); check the connection string's HostName or --hub`
		if err == nil || err.Error() != want {
			t.Errorf("probe %v: err = %v, want %s", probe, err, want)
		}
		var ce *hubapi.ContactError
		var dns *net.DNSError
		if !errors.As(err, &ce) || ce.Reason != hubapi.NoSuchHost || ce.Host != "hub.example:443" || ce.Attempts != 1 || !errors.As(err, &dns) {
			t.Errorf("probe %v: err = %#v, want a NoSuchHost ContactError for hub.example:443 after 1 attempt", probe, err)
		}
		if hubapi.IsRetryable(err) || d.dials != 1 || len(clock.Waits()) != 0 {
			t.Errorf("probe %v: retryable %v, %d dials, waits %v; want no retry", probe, hubapi.IsRetryable(err), d.dials, clock.Waits())
		}
		assertNoSecret(t, fmt.Sprintf("%v %+v %#v", err, err, err))
	}
}

// TestNoSuchHostResolver: the same through the system resolver, when it answers "no such host" for a
// name under .invalid (RFC 6761); skipped where there is no resolver to ask.
func TestNoSuchHostResolver(t *testing.T) {
	const host = "rollout-hubapi-test.invalid"
	if _, err := net.DefaultResolver.LookupHost(context.Background(), host); err == nil {
		t.Skipf("%s resolves here", host)
	} else if dns := (*net.DNSError)(nil); !errors.As(err, &dns) || !dns.IsNotFound {
		t.Skipf("no resolver answers here: %v", err)
	}
	c, err := hubapi.NewFromConnectionString(testConnString(host), hubapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = c.Probe(context.Background())
	var ce *hubapi.ContactError
	if !errors.As(err, &ce) || ce.Reason != hubapi.NoSuchHost || !strings.Contains(err.Error(), `"`+host+`"`) {
		t.Errorf("err = %v, want a NoSuchHost naming %s", err, host)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// refusedAddr is a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestConnectionRefused: Probe retries a refused connection for at most ProbeContactBudget, then says
// where it dialled and asks whether the emulator runs; other calls keep their full retries.
func TestConnectionRefused(t *testing.T) {
	addr := refusedAddr(t)
	clock := hubapitest.NewAutoClock(t0)
	c, err := hubapi.NewFromConnectionString(testConnString(addr), hubapi.Options{PlainHTTP: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Probe(context.Background())
	var ce *hubapi.ContactError
	if !errors.As(err, &ce) || ce.Reason != hubapi.ConnectionRefused || ce.Host != addr {
		t.Fatalf("err = %v, want a ConnectionRefused ContactError for %s", err, addr)
	}
	var total time.Duration
	for _, w := range clock.Waits() {
		total += w
	}
	if ce.Attempts < 2 || len(clock.Waits()) != ce.Attempts-1 || total > hubapi.ProbeContactBudget || ce.Elapsed != total {
		t.Errorf("%d attempts, waits %v (%v), elapsed %v; want retries within %v", ce.Attempts, clock.Waits(), total, ce.Elapsed, hubapi.ProbeContactBudget)
	}
	for _, want := range []string{"nothing accepts connections at " + addr, "connection refused", fmt.Sprintf("%d attempts", ce.Attempts), "is the emulator running?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to say %q", err, want)
		}
	}
	if !hubapi.IsRetryable(err) {
		t.Error("a refused connection is not retryable")
	}
	assertNoSecret(t, fmt.Sprintf("%v %+v %#v", err, err, err))

	clock = hubapitest.NewAutoClock(t0)
	c, _ = hubapi.NewFromConnectionString(testConnString(addr), hubapi.Options{PlainHTTP: true, Clock: clock})
	_, err = c.GetTwin(context.Background(), "dev1")
	if !errors.As(err, &ce) || ce.Attempts != hubapi.DefaultMaxRetries+1 {
		t.Errorf("GetTwin: err = %v, want a ContactError after %d attempts", err, hubapi.DefaultMaxRetries+1)
	}

	// A remote host gets no emulator hint.
	remote := &hubapi.ContactError{Reason: hubapi.ConnectionRefused, Host: "myhub.azure-devices.net:443", Attempts: 1}
	if s := remote.Error(); strings.Contains(s, "emulator") || !strings.Contains(s, "HostName or --hub") {
		t.Errorf("remote refusal: %q", s)
	}
}

// TestUnknownAuthority: the emulator's HTTPS listener without its CA fails at once, naming --ca-file
// and SSL_CERT_FILE.
func TestUnknownAuthority(t *testing.T) {
	srv := emulatortest.Start(t, "", emulator.Options{TLS: true, CertDir: t.TempDir()})
	t.Setenv("SSL_CERT_FILE", "") // the system roots only, whatever the environment trusts
	clock := hubapitest.NewAutoClock(time.Now())
	c, err := hubapi.NewFromConnectionString(srv.ConnectionString(), hubapi.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Probe(context.Background())
	host := strings.TrimPrefix(srv.URL(), "https://")
	want := "iothub: the hub's TLS certificate (" + host + ") is signed by an unknown authority; " +
		"for a local hub pass its CA with --ca-file or SSL_CERT_FILE (rollout emulator prints the CA file)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	var ce *hubapi.ContactError
	if !errors.As(err, &ce) || ce.Reason != hubapi.UnknownAuthority || ce.Attempts != 1 || hubapi.IsRetryable(err) || len(clock.Waits()) != 0 {
		t.Errorf("err = %#v, waits %v; want an UnknownAuthority ContactError, not retried", err, clock.Waits())
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("%d requests reached the emulator", st.Requests)
	}
	key := emulator.DevelopmentPolicyKey
	if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(s, key) || strings.Contains(s, "sig=") {
		t.Errorf("the error reveals the key or a token: %s", s)
	}
}
