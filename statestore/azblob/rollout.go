package azblob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/iot-rollout/rollout/statestore"
)

// rootBucket is the bucket whose records live in the root itself: the rollout's small, often
// rewritten State record. Every other bucket's records go to chunks.
const rootBucket = "state"

// rootDoc is NAME/state.json.
type rootDoc struct {
	Format  int                                   `json:"format"`
	Holder  *statestore.Holder                    `json:"holder,omitempty"`
	Seq     int64                                 `json:"seq,omitempty"`
	Head    string                                `json:"head,omitempty"` // the newest chunk
	Records map[string]map[string]json.RawMessage `json:"records,omitempty"`
}

// chunkDoc is one Update's bulk records, NAME/chunks/SSSSSSSSSS-RRRRRRRR.json, never rewritten.
type chunkDoc struct {
	Seq     int64                                 `json:"seq"`
	Prev    string                                `json:"prev,omitempty"`
	Records map[string]map[string]json.RawMessage `json:"records"`
}

// rollout is one rollout's records in the container. Its index holds the records of the chunks its
// last-read root reaches; chunks never change, so the index only ever grows by the new ones.
type rollout struct {
	b    *Container
	name string
	root *blockblob.Client

	mu    sync.Mutex
	etag  azcore.ETag // of the root last read or written; "" when there is none
	doc   rootDoc
	index map[string][]byte // bucket + "\x00" + key → record
	seen  string            // the chunk the index reaches
	lease *heldLease
}

var _ statestore.Records = (*rollout)(nil)

func newRollout(b *Container, name string) *rollout {
	return &rollout{b: b, name: name, root: b.c.NewBlockBlobClient(b.prefix + name + "/state.json"),
		index: map[string][]byte{}, doc: rootDoc{Format: 1}}
}

func (r *rollout) blob(rel string) *blockblob.Client {
	return r.b.c.NewBlockBlobClient(r.b.prefix + r.name + "/" + rel)
}

// refresh reads the root, unless this process holds the lease and has read it (nobody else can write
// it then), and the chunks it reaches that the index lacks.
func (r *rollout) refresh(ctx context.Context) error {
	if r.lease != nil && r.etag != "" {
		return nil
	}
	var o blob.DownloadStreamOptions
	if r.etag != "" {
		o.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &r.etag}}
	}
	resp, err := r.root.DownloadStream(ctx, &o)
	switch {
	case statusIs(err, http.StatusNotModified):
		return nil
	case bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound):
		r.etag, r.doc, r.seen, r.index = "", rootDoc{Format: 1}, "", map[string][]byte{}
		return nil
	case err != nil:
		return r.b.failed("read "+r.name+"/state.json", err)
	case resp.Body == nil || resp.ETag != nil && *resp.ETag == r.etag: // not modified
		if resp.Body != nil {
			resp.Body.Close()
		}
		return nil
	}
	var doc rootDoc
	if err := readJSON(resp.Body, &doc); err != nil {
		return fmt.Errorf("state %s: %s/state.json: %w", r.b.where, r.name, err)
	}
	if doc.Head != r.seen {
		if err := r.follow(ctx, doc.Head); err != nil {
			return err
		}
	}
	r.etag, r.doc = *resp.ETag, doc
	return nil
}

// follow reads the chunks from head back to the one the index reaches, and adds them oldest first.
// A chain that never meets it (the rollout was pushed over) is read whole into a fresh index. A reader
// that has read nothing yet fetches every chunk at once rather than one link at a time.
func (r *rollout) follow(ctx context.Context, head string) error {
	var fetched map[string]chunkDoc
	if r.seen == "" {
		var err error
		if fetched, err = r.fetchAll(ctx); err != nil {
			return err
		}
	}
	var chain []chunkDoc
	name := head
	for name != "" && name != r.seen {
		c, ok := fetched[name]
		if !ok {
			var err error
			if c, err = r.chunk(ctx, name); err != nil {
				return err
			}
		}
		chain = append(chain, c)
		name = c.Prev
	}
	if name == "" && r.seen != "" {
		r.index = map[string][]byte{}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		r.add(chain[i].Records)
	}
	r.seen = head
	return nil
}

// chunk reads one chunk blob.
func (r *rollout) chunk(ctx context.Context, name string) (chunkDoc, error) {
	var c chunkDoc
	resp, err := r.blob(name).DownloadStream(ctx, nil)
	if err != nil {
		return c, r.b.failed("read "+r.name+"/"+name, err)
	}
	if err := readJSON(resp.Body, &c); err != nil {
		return c, fmt.Errorf("state %s: %s/%s: %w", r.b.where, r.name, name, err)
	}
	return c, nil
}

// fetchAll reads every chunk blob of the rollout, eight at a time, by name (chunks/...). Orphans of
// a crash are read too; the walk from the root's head leaves them out.
func (r *rollout) fetchAll(ctx context.Context) (map[string]chunkDoc, error) {
	prefix := r.b.prefix + r.name + "/"
	var names []string
	pager := r.b.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: to(prefix + "chunks/")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, r.b.failed("list "+r.name+"/chunks", err)
		}
		for _, it := range page.Segment.BlobItems {
			names = append(names, strings.TrimPrefix(*it.Name, prefix))
		}
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
		out   = make(map[string]chunkDoc, len(names))
		slots = make(chan struct{}, 8)
	)
	for _, name := range names {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			c, err := r.chunk(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			out[name] = c
		}()
	}
	wg.Wait()
	return out, first
}

func (r *rollout) add(records map[string]map[string]json.RawMessage) {
	for bucket, m := range records {
		for k, v := range m {
			r.index[bucket+"\x00"+k] = v
		}
	}
}

func readJSON(body io.ReadCloser, v any) error {
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("corrupt state blob: %w", err)
	}
	return nil
}

func statusIs(err error, code int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

// Exists reports whether the rollout has a State record (a root that Lock created has none yet).
func (r *rollout) Exists(ctx context.Context) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return false, err
	}
	return len(r.doc.Records[rootBucket]) > 0, nil
}

// View runs fn on the records the root reaches now.
func (r *rollout) View(ctx context.Context, fn func(statestore.Tx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return err
	}
	if len(r.doc.Records[rootBucket]) == 0 {
		return statestore.ErrNoState
	}
	return fn(&tx{r: r})
}

// Update runs fn and commits what it wrote: a chunk of its bulk records, then the root. Without the
// lease a root that changed since it was read is read again and fn run again, a few times.
func (r *rollout) Update(ctx context.Context, fn func(statestore.Tx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if err := r.refresh(ctx); err != nil {
			return err
		}
		t := &tx{r: r, puts: map[string]map[string]json.RawMessage{}}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.puts) == 0 {
			return nil
		}
		err := r.commit(ctx, t.puts)
		if errors.Is(err, errConflict) && r.lease == nil && attempt < 3 {
			continue // the next refresh reads the root that changed
		}
		return err
	}
}

// errConflict is a root write refused because the root changed since it was read.
var errConflict = errors.New("the state changed while it was being written")

// commit writes puts: the bulk as a new chunk, then the root that refers to it.
func (r *rollout) commit(ctx context.Context, puts map[string]map[string]json.RawMessage) error {
	doc := r.doc
	doc.Records = map[string]map[string]json.RawMessage{}
	for b, m := range r.doc.Records {
		doc.Records[b] = m
	}
	bulk := map[string]map[string]json.RawMessage{}
	for b, m := range puts {
		if b != rootBucket {
			bulk[b] = m
			continue
		}
		merged := map[string]json.RawMessage{}
		for k, v := range doc.Records[b] {
			merged[k] = v
		}
		for k, v := range m {
			merged[k] = v
		}
		doc.Records[b] = merged
	}
	if len(bulk) > 0 {
		c := chunkDoc{Seq: doc.Seq + 1, Prev: doc.Head, Records: bulk}
		name := fmt.Sprintf("chunks/%010d-%s.json", c.Seq, randomHex(4))
		if _, err := r.put(ctx, r.blob(name), c, &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}); err != nil {
			return r.b.failed("write "+r.name+"/"+name, err)
		}
		doc.Seq, doc.Head = c.Seq, name
	}
	if err := r.putRoot(ctx, doc); err != nil {
		return err
	}
	r.add(bulk)
	r.seen = doc.Head
	return nil
}

// putRoot writes the root conditional on the ETag read (or on there being none) and on the lease.
func (r *rollout) putRoot(ctx context.Context, doc rootDoc) error {
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{}}
	if r.etag == "" {
		cond.ModifiedAccessConditions.IfNoneMatch = to(azcore.ETagAny)
	} else {
		cond.ModifiedAccessConditions.IfMatch = to(r.etag)
	}
	if r.lease != nil {
		cond.LeaseAccessConditions = &blob.LeaseAccessConditions{LeaseID: to(r.lease.id)}
	}
	etag, err := r.put(ctx, r.root, doc, cond)
	switch {
	case err == nil:
		r.etag, r.doc = etag, doc
		return nil
	case bloberror.HasCode(err, bloberror.LeaseNotPresentWithBlobOperation, bloberror.LeaseIDMismatchWithBlobOperation, bloberror.LeaseLost):
		if r.lease != nil {
			r.lease.markLost()
		}
		return fmt.Errorf("state %s: %w", r.b.where, statestore.ErrLockLost)
	case bloberror.HasCode(err, bloberror.LeaseIDMissing):
		h := statestore.Holder{}
		if r.doc.Holder != nil {
			h = *r.doc.Holder
		}
		return &statestore.LockedError{Name: r.name, Holder: h}
	case bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists):
		if r.lease != nil {
			r.lease.markLost() // only a holder of the lease could have written the root
			return fmt.Errorf("state %s: %w", r.b.where, statestore.ErrLockLost)
		}
		return errConflict
	}
	return r.b.failed("write "+r.name+"/state.json", err)
}

// put uploads v as JSON, creating the container when it is missing, and returns the blob's ETag.
func (r *rollout) put(ctx context.Context, bb *blockblob.Client, v any, cond *blob.AccessConditions) (azcore.ETag, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	upload := func() (blockblob.UploadResponse, error) {
		return bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), &blockblob.UploadOptions{
			AccessConditions: cond, HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to("application/json")}})
	}
	resp, err := upload()
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		if err := r.b.ensureContainer(ctx); err != nil {
			return "", err
		}
		resp, err = upload()
	}
	if err != nil {
		return "", err
	}
	return *resp.ETag, nil
}

// tx reads the index (and, in an Update, what fn wrote) and collects the writes.
type tx struct {
	r    *rollout
	puts map[string]map[string]json.RawMessage // nil in a View
}

func (t *tx) Get(bucket, key string) ([]byte, error) {
	if v, ok := t.puts[bucket][key]; ok {
		return v, nil
	}
	if bucket == rootBucket {
		return t.r.doc.Records[bucket][key], nil
	}
	return t.r.index[bucket+"\x00"+key], nil
}

func (t *tx) Put(bucket, key string, data []byte) error {
	if t.puts == nil {
		return errors.New("state: write in a read transaction")
	}
	if !json.Valid(data) {
		return fmt.Errorf("state: record %s/%s is not a JSON document", bucket, key)
	}
	m := t.puts[bucket]
	if m == nil {
		m = map[string]json.RawMessage{}
		t.puts[bucket] = m
	}
	m[key] = append(json.RawMessage(nil), data...)
	return nil
}

// Dump reads every record the root reaches.
func (r *rollout) Dump(ctx context.Context) (map[string]map[string][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return nil, err
	}
	if len(r.doc.Records[rootBucket]) == 0 {
		return nil, statestore.ErrNoState
	}
	out := map[string]map[string][]byte{}
	put := func(bucket, key string, v []byte) {
		if out[bucket] == nil {
			out[bucket] = map[string][]byte{}
		}
		out[bucket][key] = v
	}
	for b, m := range r.doc.Records {
		for k, v := range m {
			put(b, k, v)
		}
	}
	for bk, v := range r.index {
		b, k, _ := strings.Cut(bk, "\x00")
		put(b, k, v)
	}
	return out, nil
}

func to[T any](v T) *T { return &v }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
