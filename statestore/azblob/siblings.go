package azblob

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/iot-rollout/rollout/statestore"
)

// Siblings: NAME/KIND/KEY.json, the key path-escaped.

func (r *rollout) siblingBlob(kind, key string) *blockblob.Client {
	return r.blob(kind + "/" + url.PathEscape(key) + ".json")
}

// PutSibling writes a sibling record without the lock.
func (r *rollout) PutSibling(ctx context.Context, kind, key string, data []byte, create bool) error {
	var cond *blob.AccessConditions
	if create {
		cond = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}
	}
	_, err := r.put(ctx, r.siblingBlob(kind, key), json.RawMessage(data), cond)
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return statestore.ErrExists
	}
	if err != nil {
		return r.b.failed("write "+r.name+"/"+kind+"/"+key, err)
	}
	return nil
}

// DeleteSibling removes a sibling record.
func (r *rollout) DeleteSibling(ctx context.Context, kind, key string) error {
	_, err := r.siblingBlob(kind, key).Delete(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil
	}
	return r.b.failed("delete "+r.name+"/"+kind+"/"+key, err)
}

// Siblings reads every sibling record of kind.
func (r *rollout) Siblings(ctx context.Context, kind string) (map[string][]byte, error) {
	out := map[string][]byte{}
	prefix := r.b.prefix + r.name + "/" + kind + "/"
	pager := r.b.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, r.b.failed("list "+r.name+"/"+kind, err)
		}
		for _, it := range page.Segment.BlobItems {
			key, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(*it.Name, prefix), ".json"))
			if err != nil {
				continue // not one of ours
			}
			resp, err := r.b.c.NewBlobClient(*it.Name).DownloadStream(ctx, nil)
			if bloberror.HasCode(err, bloberror.BlobNotFound) {
				continue // deleted since the listing
			}
			if err != nil {
				return nil, r.b.failed("read "+*it.Name, err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, r.b.failed("read "+*it.Name, err)
			}
			out[key] = data
		}
	}
	return out, nil
}
