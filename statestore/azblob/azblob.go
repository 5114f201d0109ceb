// Package azblob keeps rollout states in an Azure Blob container, shared by every machine that runs,
// approves or watches a rollout: a scheduled pipeline's runner that keeps nothing, a laptop, another
// region.
//
// Layout under the container's PREFIX, per rollout NAME:
//
//	NAME/state.json                   the root: the rollout's State record, the newest chunk, the holder
//	NAME/chunks/SSSSSSSSSS-RRRRRRRR.json  write-once bulk data of one Update, linked to the one before
//	NAME/approvals/WAVE.json          siblings: approvals, pauses and promotions, written by anyone
//	NAME/controls/KEY.json            without the lock
//
// An Update writes its bulk records (device lists, prior twin values, outcomes, job records: what a
// wave, a batch or a job adds) once, as a new chunk created with If-None-Match: *, and then the root
// that refers to it, conditional on the root's ETag and, while the rollout is locked, on the lease.
// A crash between the two leaves a chunk nothing refers to; readers follow the chain from the root's
// head only, so they see the root's version and the chunks it reached, which never change. A writer
// that lost its lease cannot write the root, so its chunks stay invisible: the first capture of a
// batch's prior values that counts is the one the current holder made.
//
// The lock is a 60 s lease on the root, renewed every 20 s in the background. A holder that dies
// frees it within a minute; `rollout unlock` breaks it after showing the holder, which Lock writes
// into the root. Blobs are written private (the container is created without public access) and
// hold no secret: the state never holds one.
package azblob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/iot-rollout/rollout/statestore"
)

// Options configure the connection to the container.
type Options struct {
	// ConnectionString is a storage account connection string (AZURE_STORAGE_CONNECTION_STRING):
	// its AccountName and AccountKey, or its SharedAccessSignature, authorize the requests. Empty:
	// Microsoft Entra through azidentity.DefaultAzureCredential (role Storage Blob Data
	// Contributor; reading needs only Storage Blob Data Reader).
	ConnectionString string
	// Retry bounds the retries of one request; zero values take the defaults below.
	Retry policy.RetryOptions
	// Policies run on every request sent, after the retry policy (a meter of bytes sent, say).
	Policies []policy.Policy
}

// Defaults of a request's retries: a storage service that is away for 20 s is waited for (1+2+4+8+10
// s of backoff), one away for longer fails the request, and the command exits as for a state error.
const (
	defaultRetries       = 5
	defaultRetryDelay    = time.Second
	defaultMaxRetryDelay = 10 * time.Second
	defaultTryTimeout    = 30 * time.Second
)

// Container is a blob container (and prefix) holding rollout states.
type Container struct {
	c      *container.Client
	cred   azcore.TokenCredential // nil with a connection string
	where  string                 // the container's URL with its prefix, for messages
	prefix string                 // "" or "PREFIX/"
}

var _ statestore.Backend = (*Container)(nil)

// New returns the container that rawURL names: https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX],
// or path-style http(s)://HOST:PORT/ACCOUNT/CONTAINER[/PREFIX] for a local storage emulator. A URL
// whose host is not a *.blob.* endpoint is taken as path-style.
func New(rawURL string, o Options) (*Container, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("state %q: not a blob container URL (https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX])", redactURL(rawURL))
	}
	if u.RawQuery != "" || u.User != nil {
		return nil, errors.New("state: give the container URL without a query or user; credentials come from AZURE_STORAGE_CONNECTION_STRING or Microsoft Entra")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	account := strings.SplitN(u.Hostname(), ".", 2)[0]
	if !strings.Contains(u.Hostname(), ".blob.") { // path-style: the account is the first segment
		account, parts = parts[0], parts[1:]
	}
	if len(parts) == 0 || parts[0] == "" || account == "" {
		return nil, fmt.Errorf("state %s: the URL names no container", u.Redacted())
	}
	service := u.Scheme + "://" + u.Host + "/"
	if !strings.Contains(u.Hostname(), ".blob.") {
		service += account + "/"
	}
	containerURL := service + parts[0]
	var cred azcore.TokenCredential
	if o.ConnectionString == "" {
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err != nil {
			return nil, fmt.Errorf("state: Microsoft Entra credential: %w", err)
		}
	}
	c, err := newClient(containerURL, account, cred, o)
	if err != nil {
		return nil, err
	}
	prefix := strings.Join(parts[1:], "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Container{c: c, cred: cred, where: containerURL + "/" + prefix, prefix: prefix}, nil
}

func newClient(containerURL, account string, cred azcore.TokenCredential, o Options) (*container.Client, error) {
	r := o.Retry
	if r.MaxRetries == 0 {
		r.MaxRetries = defaultRetries
	}
	if r.RetryDelay == 0 {
		r.RetryDelay = defaultRetryDelay
	}
	if r.MaxRetryDelay == 0 {
		r.MaxRetryDelay = defaultMaxRetryDelay
	}
	if r.TryTimeout == 0 {
		r.TryTimeout = defaultTryTimeout
	}
	opts := &container.ClientOptions{ClientOptions: policy.ClientOptions{Retry: r, PerRetryPolicies: o.Policies}}
	if cred != nil {
		return container.NewClient(containerURL, cred, opts)
	}
	cs, err := parseConnectionString(o.ConnectionString)
	if err != nil {
		return nil, err
	}
	switch {
	case cs["AccountKey"] != "":
		if name := cs["AccountName"]; name != "" && name != account {
			return nil, fmt.Errorf("state: AZURE_STORAGE_CONNECTION_STRING is for account %s, the state URL names %s", name, account)
		}
		cred, err := container.NewSharedKeyCredential(account, cs["AccountKey"])
		if err != nil {
			return nil, errors.New("state: AZURE_STORAGE_CONNECTION_STRING: the AccountKey is not valid base64")
		}
		return container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
	case cs["SharedAccessSignature"] != "":
		return container.NewClientWithNoCredential(containerURL+"?"+cs["SharedAccessSignature"], opts)
	}
	return nil, errors.New("state: AZURE_STORAGE_CONNECTION_STRING has neither an AccountKey nor a SharedAccessSignature")
}

// parseConnectionString reads a storage connection string's key=value pairs. Its errors never
// repeat the string: it holds a secret.
func parseConnectionString(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errors.New("state: AZURE_STORAGE_CONNECTION_STRING is not a connection string (KEY=VALUE;...)")
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// redactURL drops anything after a '?' (a SAS token) from a URL given by a user.
func redactURL(s string) string {
	s, _, _ = strings.Cut(s, "?")
	return s
}

func (b *Container) String() string { return b.where }

// Open returns rollout name's records in the container.
func (b *Container) Open(_ context.Context, name string) (statestore.Records, error) {
	if err := statestore.CheckName(name); err != nil {
		return nil, err
	}
	return newRollout(b, name), nil
}

// Names lists the rollouts in the container: the folders under its prefix that hold a root.
func (b *Container) Names(ctx context.Context) ([]string, error) {
	var names []string
	pager := b.c.NewListBlobsHierarchyPager("/", &container.ListBlobsHierarchyOptions{Prefix: &b.prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, b.failed("list rollouts", err)
		}
		for _, p := range page.Segment.BlobPrefixes {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(*p.Name, b.prefix), "/"))
		}
	}
	return names, nil
}

// ensureContainer creates the container, private, when it does not exist.
func (b *Container) ensureContainer(ctx context.Context) error {
	_, err := b.c.Create(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	return b.failed("create the container", err)
}

// failed words a storage error for a person: what was being done, where, and the service's code,
// never a credential.
func (b *Container) failed(what string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("state %s: %s: %s (HTTP %d)", b.where, what, re.ErrorCode, re.StatusCode)
	}
	var ue *url.Error
	if errors.As(err, &ue) { // its URL may carry a SAS token
		return fmt.Errorf("state %s: %s: %s %s: %v", b.where, what, ue.Op, redactURL(ue.URL), ue.Err)
	}
	return fmt.Errorf("state %s: %s: %w", b.where, what, err)
}
