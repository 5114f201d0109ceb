package azblob

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// storageScope is the token scope of Azure Storage's data plane.
const storageScope = "https://storage.azure.com/.default"

// Identity names the Microsoft Entra principal the container is reached as: its user principal
// name, else its application (client) id, from the token's claims. With a connection string it is "".
// An approval, pause or acceptance records it as who acted.
func (b *Container) Identity(ctx context.Context) (string, error) {
	if b.cred == nil {
		return "", nil
	}
	tok, err := b.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{storageScope}})
	if err != nil {
		return "", b.failed("sign in with Microsoft Entra", err)
	}
	return principal(tok.Token), nil
}

// Identity is the container's (see Container.Identity).
func (r *rollout) Identity(ctx context.Context) (string, error) { return r.b.Identity(ctx) }

// principal reads who a JWT access token names: a person's upn (or unique_name, preferred_username),
// else an application's id. The token is not verified: the service that issued it did, and the name is
// for the record, not for access. A token that cannot be read names nobody.
func principal(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var c map[string]any
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	for _, k := range []string{"upn", "unique_name", "preferred_username"} {
		if s, ok := c[k].(string); ok && s != "" {
			return s
		}
	}
	for _, k := range []string{"appid", "azp", "oid"} {
		if s, ok := c[k].(string); ok && s != "" {
			return "app:" + s
		}
	}
	return ""
}
