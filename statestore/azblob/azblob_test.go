//go:build linux

package azblob_test

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/iot-rollout/rollout/statestore"
	"github.com/iot-rollout/rollout/statestore/azblob"
	"github.com/iot-rollout/rollout/statestore/azblob/azuritetest"
	"github.com/iot-rollout/rollout/statestore/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	azuritetest.Stop()
	os.Exit(code)
}

var containers atomic.Int64

// fresh returns a new container (with a prefix) on the shared Azurite.
func fresh(t *testing.T) (url string, open func() statestore.Backend) {
	t.Helper()
	srv := azuritetest.Shared(t)
	url = srv.URL(fmt.Sprintf("c%d-%d/team/rollouts", os.Getpid(), containers.Add(1)))
	open = func() statestore.Backend {
		b, err := azblob.New(url, azblob.Options{ConnectionString: srv.ConnectionString()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return url, open
}

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Features{Breakable: true}, func(t *testing.T) storetest.Env {
		_, open := fresh(t)
		return storetest.Env{Backend: open(), Other: open}
	})
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"ftp://x/y", "https://acct.blob.core.windows.net/", "https://acct.blob.core.windows.net/c?sig=SECRET", "http://127.0.0.1:10000/devstoreaccount1"} {
		_, err := azblob.New(u, azblob.Options{ConnectionString: "AccountName=acct;AccountKey=a2V5"})
		if err == nil {
			t.Errorf("New(%q) accepted it", u)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("New(%q) echoed the SAS: %v", u, err)
		}
	}
	_, err := azblob.New("https://acct.blob.core.windows.net/c", azblob.Options{ConnectionString: "AccountName=acct;AccountKey=not base64 SECRET"})
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a bad key: %v", err)
	}
}
