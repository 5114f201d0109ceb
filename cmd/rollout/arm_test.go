package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type fakeCredential struct{ scopes []string }

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scopes = o.Scopes
	return azcore.AccessToken{Token: "arm-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// armServer answers as Azure Resource Manager does for the IotHubs list of subscription sub: two
// pages, the second through nextLink.
func armServer(t *testing.T, sub string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer arm-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"AuthenticationFailed","message":"no token"}}`)
			return
		}
		if r.URL.Path != "/subscriptions/"+sub+"/providers/Microsoft.Devices/IotHubs" || r.URL.Query().Get("api-version") != armIotHubAPI {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":{"code":"AuthorizationFailed","message":"no access"}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("page") == "" {
			fmt.Fprintf(w, `{"value":[{"name":"eu","properties":{"hostName":"eu.azure-devices.net"},"sku":{"name":"S1","tier":"Standard","capacity":1}}],
				"nextLink":"%s%s?api-version=%s&page=2"}`, srv.URL, r.URL.Path, armIotHubAPI)
			return
		}
		fmt.Fprint(w, `{"value":[{"name":"us","properties":{"hostName":"us.azure-devices.net"},"sku":{"name":"S3","tier":"Standard","capacity":4}},
			{"name":"cheap","properties":{"hostName":"cheap.azure-devices.net"},"sku":{"name":"B1","tier":"Basic","capacity":1}}]}`)
	}))
	t.Cleanup(srv.Close)
	armEndpoint, armTransport = srv.URL, srv.Client()
	t.Cleanup(func() { armEndpoint, armTransport = "https://management.azure.com", nil })
	return srv
}

func TestHubSKUFromAzureResourceManager(t *testing.T) {
	armServer(t, "sub-1")
	cred := &fakeCredential{}
	ctx := context.Background()
	tier, units, err := hubSKU(ctx, cred, "sub-1", "US.azure-devices.net")
	if err != nil || tier != "S3" || units != 4 {
		t.Errorf("hubSKU = %s, %d, %v; want S3, 4 from the second page", tier, units, err)
	}
	if len(cred.scopes) != 1 || cred.scopes[0] != armScope {
		t.Errorf("token scopes %v", cred.scopes)
	}
	if _, _, err := hubSKU(ctx, cred, "sub-1", "cheap.azure-devices.net"); err == nil || !strings.Contains(err.Error(), "Basic") {
		t.Errorf("a Basic hub: %v", err)
	}
	if _, _, err := hubSKU(ctx, cred, "sub-1", "nowhere.azure-devices.net"); err == nil || !strings.Contains(err.Error(), "no IoT hub nowhere.azure-devices.net") {
		t.Errorf("an unknown hub: %v", err)
	}
	if _, _, err := hubSKU(ctx, cred, "other", "eu.azure-devices.net"); err == nil || !strings.Contains(err.Error(), "AuthorizationFailed") {
		t.Errorf("a subscription without access: %v", err)
	}
}

func TestTierFromAzure(t *testing.T) {
	armServer(t, "sub-1")
	var stderr strings.Builder
	e := &env{stderr: &stderr, getenv: func(string) string { return "" }}
	f := &hubFlags{hub: "eu.azure-devices.net", subscription: "sub-1", units: 1}
	if err := f.tierFromAzure(context.Background(), e, &fakeCredential{}); err != nil || f.tier != "S1" || f.units != 1 {
		t.Errorf("tierFromAzure: %s %d %v", f.tier, f.units, err)
	}
	if !strings.Contains(stderr.String(), "pacing to tier S1 with 1 unit, as Azure Resource Manager states them") {
		t.Errorf("stderr: %s", stderr.String())
	}
	f = &hubFlags{hub: "cheap.azure-devices.net", subscription: "sub-1", units: 1}
	if err := f.tierFromAzure(context.Background(), e, &fakeCredential{}); err == nil {
		t.Error("a Basic hub was accepted")
	}
	stderr.Reset()
	f = &hubFlags{hub: "eu.azure-devices.net", subscription: "nope", units: 1}
	if err := f.tierFromAzure(context.Background(), e, &fakeCredential{}); err != nil || f.tier != "" || !strings.Contains(stderr.String(), "could not be read from Azure") {
		t.Errorf("an unreadable SKU: tier %q, %v, %s", f.tier, err, stderr.String())
	}
}
