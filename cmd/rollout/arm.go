package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Azure Resource Manager, where a hub's SKU and units are known. Variables so that tests answer as
// ARM does, over TLS on loopback.
var (
	armEndpoint  = "https://management.azure.com"
	armTransport policy.Transporter // nil: the default HTTP client
)

const (
	armScope = "https://management.azure.com/.default"
	// armIotHubAPI is the Microsoft.Devices resource provider's API version for IotHubs (stable,
	// 2023-06-30 in the REST reference).
	armIotHubAPI = "2023-06-30"
)

// armHub is what rollout reads of a Microsoft.Devices/IotHubs resource.
type armHub struct {
	Name       string `json:"name"`
	Properties struct {
		HostName string `json:"hostName"`
	} `json:"properties"`
	SKU struct {
		Name     string `json:"name"`
		Capacity int    `json:"capacity"`
	} `json:"sku"`
}

// hubSKU reads the tier and units of the hub whose host name is host from Azure Resource Manager:
// the IotHubs of the subscription, listed with cred's Microsoft Entra token (the role Reader on the
// hub or its subscription suffices), found by host name. A hub of a Basic tier has no jobs, twins or
// direct methods, so it is refused.
func hubSKU(ctx context.Context, cred azcore.TokenCredential, subscription, host string) (tier string, units int, err error) {
	pl := runtime.NewPipeline("rollout", buildVersion(readBuildInfo).version, runtime.PipelineOptions{},
		&policy.ClientOptions{Transport: armTransport, PerRetryPolicies: []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{armScope}, nil)}})
	next := fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.Devices/IotHubs?api-version=%s",
		armEndpoint, url.PathEscape(subscription), armIotHubAPI)
	for pages := 0; next != "" && pages < 100; pages++ {
		var page struct {
			Value    []armHub `json:"value"`
			NextLink string   `json:"nextLink"`
		}
		if err := armGet(ctx, pl, next, &page); err != nil {
			return "", 0, err
		}
		for _, h := range page.Value {
			if strings.EqualFold(h.Properties.HostName, host) {
				if strings.HasPrefix(strings.ToUpper(h.SKU.Name), "B") {
					return "", 0, &basicTierError{host, h.SKU.Name}
				}
				return h.SKU.Name, max(h.SKU.Capacity, 1), nil
			}
		}
		next = page.NextLink
	}
	return "", 0, fmt.Errorf("no IoT hub %s in subscription %s (or no access to read it)", host, subscription)
}

// basicTierError is a hub of a Basic tier: it has no jobs, device twins or direct methods.
type basicTierError struct{ host, sku string }

func (e *basicTierError) Error() string {
	return fmt.Sprintf("hub %s is of the Basic tier %s, which has no jobs, device twins or direct methods: a rollout needs a Standard (or Free) tier", e.host, e.sku)
}

func armGet(ctx context.Context, pl runtime.Pipeline, u string, v any) error {
	req, err := runtime.NewRequest(ctx, http.MethodGet, u)
	if err != nil {
		return err
	}
	resp, err := pl.Do(req)
	if err != nil {
		return fmt.Errorf("Azure Resource Manager: %w", err)
	}
	defer resp.Body.Close()
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return fmt.Errorf("Azure Resource Manager: %w", runtime.NewResponseError(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return errors.New("Azure Resource Manager: an answer that is not the IotHubs list")
	}
	return nil
}
