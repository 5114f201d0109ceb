package hubapi_test

import (
	"context"
	"fmt"

	"github.com/iot-rollout/rollout/emulator"
	"github.com/iot-rollout/rollout/hubapi"
)

// The client against a local hub: a twin patch guarded by the etag, then a paged query.
func Example() {
	ctx := context.Background()
	hub, err := emulator.Start(ctx, emulator.Options{}) // plain HTTP on a free loopback port
	if err != nil {
		panic(err)
	}
	defer hub.Close()

	s1, _ := hubapi.TierQuotas("S1", 1)
	c, err := hubapi.NewFromConnectionString(hub.ConnectionString(), hubapi.Options{PlainHTTP: true, Quotas: &s1})
	if err != nil {
		panic(err)
	}
	if _, err := c.CreateDevice(ctx, &hubapi.Device{DeviceID: "thermostat-1"}); err != nil {
		panic(err)
	}
	twin, err := c.GetTwin(ctx, "thermostat-1")
	if err != nil {
		panic(err)
	}
	patch := &hubapi.Twin{Tags: map[string]any{"ring": "canary"}}
	if _, err := c.UpdateTwin(ctx, "thermostat-1", patch, twin.ETag); err != nil {
		panic(err)
	}
	_, err = c.UpdateTwin(ctx, "thermostat-1", patch, twin.ETag) // the etag is stale now
	fmt.Println("stale etag refused:", hubapi.IsPreconditionFailed(err))

	twins, err := hubapi.Collect[hubapi.Twin](ctx, c.Query(ctx, "SELECT * FROM devices WHERE tags.ring = 'canary'", 100))
	if err != nil {
		panic(err)
	}
	fmt.Println(len(twins), twins[0].DeviceID)
	// Output:
	// stale etag refused: true
	// 1 thermostat-1
}
