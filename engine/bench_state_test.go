//go:build linux

package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/iot-rollout/rollout/engine"
	"github.com/iot-rollout/rollout/engine/enginetest"
	"github.com/iot-rollout/rollout/statestore"
	"github.com/iot-rollout/rollout/statestore/azblob"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"
	"github.com/iot-rollout/rollout/statestore/bolt"
)

// sentBytes counts the request bytes sent to the storage service.
type sentBytes struct{ n atomic.Int64 }

func (m *sentBytes) Do(req *policy.Request) (*http.Response, error) {
	m.n.Add(req.Raw().ContentLength)
	return req.Next()
}

// BenchmarkStateBackends: the same 3-wave, 100,000-device twin rollout on the unlimited tier with
// its state in a directory and in a blob container on Azurite (loopback, data on disk). The blob
// backend reports the bytes it sent per device.
func BenchmarkStateBackends(b *testing.B) {
	const devices = 100_000
	planYAML := `
version: 1
name: hundredk
action:
  twinUpdate: {desired: {firmware: {version: "2.0"}}}
defaults:
  timeout: 30m
  batch: {size: 5000, growth: 2}
  success: {minSuccessRate: 100%}
waves:
  - {name: canary, target: "tags.ring = 'r0'"}
  - {name: half, target: "tags.ring = 'r1'"}
  - {name: rest, target: "*"}
`
	backends := []struct {
		name string
		open func(b *testing.B) (statestore.Backend, *sentBytes)
	}{
		{"bolt", func(b *testing.B) (statestore.Backend, *sentBytes) { return bolt.New(b.TempDir()), nil }},
		{"azblob", func(b *testing.B) (statestore.Backend, *sentBytes) {
			srv := azuritetest.Shared(b)
			m := &sentBytes{}
			c, err := azblob.New(srv.URL(fmt.Sprintf("bench%d", time.Now().UnixNano())), azblob.Options{
				ConnectionString: srv.ConnectionString(), Policies: []policy.Policy{m}})
			if err != nil {
				b.Fatal(err)
			}
			return c, m
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for range b.N {
				h := startChild(b, "unlimited", 1, 1_000, 49_000, 50_000)
				backend, meter := be.open(b)
				p := enginetest.Plan(b, planYAML)
				store, err := engine.OpenStore(context.Background(), backend, p.Name)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				res, err := engine.Apply(context.Background(), p, engine.Options{Hub: h.client, Store: store, Quotas: h.quotas})
				elapsed := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if res.Status != engine.StatusDone {
					b.Fatalf("status %s: %s", res.Status, res.Reason)
				}
				b.ReportMetric(elapsed.Seconds(), "s")
				b.ReportMetric(devices/elapsed.Seconds(), "devices/s")
				if meter != nil {
					b.ReportMetric(float64(meter.n.Load())/devices, "sent-B/device")
				}
			}
		})
	}
}
