package hubapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/iot-rollout/rollout/hubapi"
	"github.com/iot-rollout/rollout/hubapi/hubapitest"
)

// stubToken is the prefix of every token the stub credential hands out; it must never be printed.
const stubToken = "eyJ0eXAiOiJKV1Qi-stub-entra-token"

// stubCredential is an azcore.TokenCredential that mints numbered tokens on a fake clock.
type stubCredential struct {
	clock    *hubapitest.Clock
	lifetime time.Duration
	refresh  time.Duration // RefreshOn after issue; 0 leaves it unset
	fail     error

	mu     sync.Mutex
	calls  int
	scopes [][]string
}

func (s *stubCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.scopes = append(s.scopes, opts.Scopes)
	if s.fail != nil {
		return azcore.AccessToken{}, s.fail
	}
	now := s.clock.Now()
	tok := azcore.AccessToken{Token: fmt.Sprintf("%s-%d", stubToken, s.calls), ExpiresOn: now.Add(s.lifetime)}
	if s.refresh > 0 {
		tok.RefreshOn = now.Add(s.refresh)
	}
	return tok, nil
}

func (s *stubCredential) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// TestSASRenewal: one token serves requests until fewer than five minutes of its hour remain, then a
// fresh one is signed.
func TestSASRenewal(t *testing.T) {
	clock := hubapitest.NewClock(t0)
	hub := newFakeHub(t, clock)
	c := hub.client(hubapi.Options{})
	steps := []time.Duration{0, 30 * time.Minute, 24 * time.Minute, 59 * time.Second, 2 * time.Second, 10 * time.Minute}
	wantSE := []time.Time{t0, t0, t0, t0, t0.Add(55*time.Minute + time.Second), t0.Add(55*time.Minute + time.Second)}
	for i, step := range steps {
		clock.Advance(step)
		hub.queue(ok(twinJSON))
		if _, err := c.GetTwin(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
		auth := hub.requests()[i].Header.Get("Authorization")
		want := fmt.Sprintf("&se=%d&", wantSE[i].Add(time.Hour).Unix())
		if !strings.Contains(auth, want) {
			t.Errorf("request %d at +%v: %s, want se %s", i, clock.Now().Sub(t0), auth, want)
		}
	}
}

// TestEntra: the client asks the credential for the IoT Hub scope, sends "Bearer <token>", reuses the
// token until five minutes before it expires (or its RefreshOn), then renews it.
func TestEntra(t *testing.T) {
	clock := hubapitest.NewClock(t0)
	hub := newFakeHub(t, clock)
	cred := &stubCredential{clock: clock, lifetime: time.Hour}
	c, err := hubapi.NewWithCredential(hub.host(), cred, hubapi.Options{PlainHTTP: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	get := func() string {
		t.Helper()
		hub.queue(ok(twinJSON))
		if _, err := c.GetTwin(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
		r := hub.requests()
		return r[len(r)-1].Header.Get("Authorization")
	}
	if a := get(); a != "Bearer "+stubToken+"-1" {
		t.Errorf("Authorization = %q", a)
	}
	clock.Advance(54 * time.Minute)
	if a := get(); a != "Bearer "+stubToken+"-1" || cred.count() != 1 {
		t.Errorf("at 54m: %q after %d GetToken calls, want the cached token", a, cred.count())
	}
	clock.Advance(2 * time.Minute)
	if a := get(); a != "Bearer "+stubToken+"-2" || cred.count() != 2 {
		t.Errorf("at 56m: %q after %d GetToken calls, want a renewed token", a, cred.count())
	}
	for _, s := range cred.scopes {
		if len(s) != 1 || s[0] != "https://iothubs.azure.net/.default" {
			t.Errorf("scopes %v", s)
		}
	}

	// RefreshOn earlier than the margin wins.
	cred2 := &stubCredential{clock: clock, lifetime: 24 * time.Hour, refresh: 10 * time.Minute}
	c, _ = hubapi.NewWithCredential(hub.host(), cred2, hubapi.Options{PlainHTTP: true, Clock: clock, EntraScope: "https://iothubs.azure.us/.default"})
	get()
	clock.Advance(11 * time.Minute)
	get()
	if cred2.count() != 2 || cred2.scopes[0][0] != "https://iothubs.azure.us/.default" {
		t.Errorf("RefreshOn: %d calls, scopes %v", cred2.count(), cred2.scopes)
	}
}

// TestEntraFailure: a credential error is reported (wrapped, so callers can inspect it) and no request
// is sent without a token; a 401 makes the client ask for a new token.
func TestEntraFailure(t *testing.T) {
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	boom := errors.New("no credential available")
	c, _ := hubapi.NewWithCredential(hub.host(), &stubCredential{clock: clock, lifetime: time.Hour, fail: boom}, hubapi.Options{PlainHTTP: true, Clock: clock})
	if _, err := c.GetTwin(context.Background(), "d"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "Entra") {
		t.Errorf("err = %v", err)
	}
	if len(hub.requests()) != 0 {
		t.Error("a request went out without a token")
	}

	cred := &stubCredential{clock: clock, lifetime: time.Hour}
	c, _ = hubapi.NewWithCredential(hub.host(), cred, hubapi.Options{PlainHTTP: true, Clock: clock})
	hub.queue(reply{status: 401, body: `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":""}`}, ok(twinJSON))
	if _, err := c.GetTwin(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	r := hub.requests()
	if cred.count() != 2 || r[len(r)-1].Header.Get("Authorization") != "Bearer "+stubToken+"-2" {
		t.Errorf("after a 401: %d GetToken calls", cred.count())
	}
}

// TestNoSecretsPrinted: no key, signature or token appears in any printed form of a client or
// connection string, nor in the errors of failed calls.
func TestNoSecretsPrinted(t *testing.T) {
	clock := hubapitest.NewAutoClock(t0)
	hub := newFakeHub(t, clock)
	sas := hub.client(hubapi.Options{})
	entra, _ := hubapi.NewWithCredential(hub.host(), &stubCredential{clock: clock, lifetime: time.Hour}, hubapi.Options{PlainHTTP: true, Clock: clock})
	cs, _ := hubapi.ParseConnectionString(testConnString(hub.host()))

	// Make each client sign and cache a token first, so there is something to leak.
	hub.queue(ok(twinJSON), ok(twinJSON))
	sas.GetTwin(context.Background(), "d")
	entra.GetTwin(context.Background(), "d")

	type wrapper struct {
		C  *hubapi.Client
		CS hubapi.ConnectionString
		c  *hubapi.Client
	}
	values := []any{sas, entra, *sas, cs, &cs, wrapper{sas, cs, entra}, &wrapper{entra, cs, sas}}
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			assertNoSecret(t, fmt.Sprintf(verb, v))
		}
	}
	if s := sas.String(); !strings.Contains(s, "SAS policy iothubowner") || !strings.Contains(s, hub.host()) {
		t.Errorf("String() = %q", s)
	}

	// Errors: a refused token, a transport failure, a bad connection string.
	hub.queue(reply{status: 401, body: `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":""}`},
		reply{status: 401, body: `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":""}`})
	_, err := sas.GetTwin(context.Background(), "d")
	assertNoSecret(t, fmt.Sprintf("%v %+v %#v", err, err, err))
	hub.srv.Close()
	for _, c := range []*hubapi.Client{sas, entra} {
		_, err := c.InvokeMethod(context.Background(), "d", &hubapi.CloudToDeviceMethod{MethodName: "m"})
		if err == nil {
			t.Fatal("a call to a closed server succeeded")
		}
		assertNoSecret(t, fmt.Sprintf("%v %+v %#v", err, err, err))
	}
	_, err = hubapi.NewFromConnectionString("HostName=h;SharedAccessKeyName=p;SharedAccessKey="+testKey[:30]+"#", hubapi.Options{})
	assertNoSecret(t, fmt.Sprintf("%v %+v %#v", err, err, err))
}
