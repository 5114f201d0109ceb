//go:build linux

package azblob

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/iot-rollout/rollout/statestore"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"
)

// TestCrashBetweenChunkAndRoot leaves what a writer killed between its two uploads leaves: a chunk
// linked from nothing (named as the next chunk would be). Readers do not see it, and the next Update
// writes a chunk of its own and links that one.
func TestCrashBetweenChunkAndRoot(t *testing.T) {
	srv := azuritetest.Shared(t)
	ctx := context.Background()
	open := func() *rollout {
		b, err := New(srv.URL(fmt.Sprintf("orphan%d", time.Now().UnixNano())), Options{ConnectionString: srv.ConnectionString()})
		if err != nil {
			t.Fatal(err)
		}
		r, err := b.Open(ctx, "fw")
		if err != nil {
			t.Fatal(err)
		}
		return r.(*rollout)
	}
	a := open()
	put := func(bucket, key, v string) func(statestore.Tx) error {
		return func(tx statestore.Tx) error { return tx.Put(bucket, key, []byte(v)) }
	}
	if err := a.Update(ctx, put("state", "state", `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	orphan := chunkDoc{Seq: a.doc.Seq + 1, Prev: a.doc.Head, Records: map[string]map[string]json.RawMessage{"snapshots": {"d1": json.RawMessage(`"lost"`)}}}
	name := fmt.Sprintf("chunks/%010d-deadbeef.json", orphan.Seq)
	if _, err := a.put(ctx, a.blob(name), orphan, &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}); err != nil {
		t.Fatal(err)
	}
	reader := &rollout{b: a.b, name: "fw", root: a.root, index: map[string][]byte{}, doc: rootDoc{Format: 1}}
	var got []byte
	if err := reader.View(ctx, func(tx statestore.Tx) error { got, _ = tx.Get("snapshots", "d1"); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Errorf("a reader sees the orphan chunk's record %s", got)
	}
	if err := a.Update(ctx, put("snapshots", "d1", `"kept"`)); err != nil {
		t.Fatal(err)
	}
	if a.doc.Head == name {
		t.Error("the next Update linked the orphan chunk")
	}
	if err := reader.View(ctx, func(tx statestore.Tx) error { got, _ = tx.Get("snapshots", "d1"); return nil }); err != nil {
		t.Fatal(err)
	}
	if string(got) != `"kept"` {
		t.Errorf("after the next Update a reader sees %s, want the Update's record", got)
	}
}
