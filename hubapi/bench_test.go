package hubapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iot-rollout/rollout/hubapi"
)

// BenchmarkGetTwin measures one call's client overhead over loopback: signing (cached), request, JSON
// decode. The server does nothing but answer.
func BenchmarkGetTwin(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(twinJSON))
	}))
	defer srv.Close()
	c, err := hubapi.NewFromConnectionString(testConnString(strings.TrimPrefix(srv.URL, "http://")), hubapi.Options{PlainHTTP: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetTwin(ctx, "dev1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollectTwins decodes a page of 100 twins, the hub's largest.
func BenchmarkCollectTwins(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 100 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(strings.Replace(twinJSON, `"dev1"`, fmt.Sprintf(`"dev%d"`, i), 1))
	}
	sb.WriteString("]")
	page := sb.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(page))
	}))
	defer srv.Close()
	c, _ := hubapi.NewFromConnectionString(testConnString(strings.TrimPrefix(srv.URL, "http://")), hubapi.Options{PlainHTTP: true})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		twins, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices", 100))
		if err != nil || len(twins) != 100 {
			b.Fatal(err)
		}
	}
}

// BenchmarkSASToken measures signing a token (done once per client per 55 minutes).
func BenchmarkSASToken(b *testing.B) {
	cs, _ := hubapi.ParseConnectionString(testConnString("myhub.azure-devices.net"))
	exp := time.Unix(1767225600, 0)
	b.ReportAllocs()
	for b.Loop() {
		_ = cs.SASToken(exp)
	}
}
