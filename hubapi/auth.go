package hubapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// EntraScope is the Microsoft Entra scope of the IoT Hub data plane in the public cloud (note the
// plural "iothubs"). Sovereign clouds use their own, set through Options.EntraScope.
const EntraScope = "https://iothubs.azure.net/.default"

// SAS token lifetime and renewal margin. The C# SDK mints 20-minute tokens, Node 1-hour ones; rollout
// takes an hour and renews when fewer than five minutes remain, so a token never expires in flight
// and a hub clock a little ahead of ours still accepts it.
const (
	sasLifetime    = time.Hour
	sasRenewMargin = 5 * time.Minute
	// entraRenewMargin renews an Entra token this long before it expires when the credential gives
	// no RefreshOn of its own.
	entraRenewMargin = 5 * time.Minute
)

// authorizer produces the Authorization header of each request.
type authorizer interface {
	header(ctx context.Context) (string, error)
	// invalidate drops a cached token after the hub refused it (401), so the next header is fresh.
	invalidate()
	// describe names the method without any secret, e.g. "SAS policy iothubowner".
	describe() string
}

// SASToken signs a service token for the hub with the policy's key, valid until expiry:
// `SharedAccessSignature sr=<host>&sig=<signature>&se=<unix seconds>&skn=<policy>`. The audience is
// the lower-cased, URL-encoded host name (with its port, when it has one), as the docs and the C#
// SDK build it. The result is a credential: never log it.
func (cs ConnectionString) SASToken(expiry time.Time) string {
	if cs.key == nil {
		return ""
	}
	sr := url.QueryEscape(strings.ToLower(cs.HostName))
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, cs.key.b)
	mac.Write([]byte(sr + "\n" + se))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se + "&skn=" + url.QueryEscape(cs.KeyName)
}

// sasAuth signs tokens from a connection string and reuses each until it nears expiry.
type sasAuth struct {
	cs  ConnectionString
	clk Clock

	mu      sync.Mutex
	token   *secret
	expires time.Time
}

func (a *sasAuth) header(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clk.Now()
	if a.token == nil || !now.Before(a.expires.Add(-sasRenewMargin)) {
		// se has whole-second resolution; truncating keeps the cached expiry equal to the signed one.
		a.expires = now.Add(sasLifetime).Truncate(time.Second)
		a.token = &secret{b: []byte(a.cs.SASToken(a.expires))}
	}
	return string(a.token.b), nil
}

func (a *sasAuth) invalidate() {
	a.mu.Lock()
	a.token = nil
	a.mu.Unlock()
}

func (a *sasAuth) describe() string { return "SAS policy " + a.cs.KeyName }

// entraAuth asks a credential for a bearer token and keeps it until it is due for renewal.
type entraAuth struct {
	cred  azcore.TokenCredential
	scope string
	clk   Clock

	mu      sync.Mutex
	token   *secret
	expires time.Time
	renew   time.Time
}

func (a *entraAuth) header(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clk.Now()
	if a.token != nil && now.Before(a.renew) {
		return "Bearer " + string(a.token.b), nil
	}
	tok, err := a.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{a.scope}})
	if err != nil {
		// A renewal that fails while the old token is still good for a while is not fatal.
		if a.token != nil && now.Before(a.expires.Add(-30*time.Second)) {
			return "Bearer " + string(a.token.b), nil
		}
		return "", fmt.Errorf("iothub: getting a Microsoft Entra token for %s: %w", a.scope, err)
	}
	if tok.Token == "" {
		return "", fmt.Errorf("iothub: the Microsoft Entra credential returned an empty token for %s", a.scope)
	}
	a.token = &secret{b: []byte(tok.Token)}
	a.expires = tok.ExpiresOn
	a.renew = tok.ExpiresOn.Add(-entraRenewMargin)
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(a.renew) {
		a.renew = tok.RefreshOn
	}
	return "Bearer " + tok.Token, nil
}

func (a *entraAuth) invalidate() {
	a.mu.Lock()
	a.token = nil
	a.mu.Unlock()
}

func (a *entraAuth) describe() string { return "Microsoft Entra (" + a.scope + ")" }
