// Package emulatortest starts the IoT Hub emulator for tests of other packages and offers a small signed
// request helper for tests that speak the REST API directly.
package emulatortest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

// Start starts an emulator with opts (a fleet file path may be given in fleetFile; "" for none) and
// closes it when the test ends. It fails the test on any error.
func Start(tb testing.TB, fleetFile string, opts emulator.Options) *emulator.Server {
	tb.Helper()
	if fleetFile != "" {
		f, err := emulator.LoadFleet(fleetFile)
		if err != nil {
			tb.Fatalf("emulatortest: %v", err)
		}
		opts.Fleet = f
	}
	s, err := emulator.Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("emulatortest: close: %v", err)
		}
	})
	return s
}

// Do sends one signed request to the emulator (path like "/twins/d1"; the api-version is added) and
// returns the response with its body read. header may be nil.
func Do(tb testing.TB, s *emulator.Server, method, path string, body string, header http.Header) (*http.Response, []byte) {
	tb.Helper()
	cs, err := hubapi.ParseConnectionString(s.ConnectionString())
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, s.URL()+path+sep+"api-version="+hubapi.APIVersion, rd)
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", cs.SASToken(time.Now().Add(time.Hour)))
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := httpClient(tb, s).Do(req)
	if err != nil {
		tb.Fatalf("emulatortest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("emulatortest: %s %s: %v", method, path, err)
	}
	return resp, b
}

var (
	clientsMu sync.Mutex
	clients   = map[string]*http.Client{}
)

// httpClient is a client that trusts the emulator's CA when it serves HTTPS.
func httpClient(tb testing.TB, s *emulator.Server) *http.Client {
	tb.Helper()
	ca := s.CAFile()
	if ca == "" {
		return http.DefaultClient
	}
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if c, ok := clients[ca]; ok {
		return c
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		tb.Fatalf("emulatortest: no certificate in %s", ca)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	clients[ca] = c
	return c
}
