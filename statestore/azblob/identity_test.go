package azblob

import (
	"encoding/base64"
	"testing"
)

func TestPrincipal(t *testing.T) {
	tok := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	for _, tc := range []struct{ token, want string }{
		{tok(`{"upn":"ana@contoso.com","appid":"x"}`), "ana@contoso.com"},
		{tok(`{"preferred_username":"bo@contoso.com"}`), "bo@contoso.com"},
		{tok(`{"appid":"11111111-2222-3333-4444-555555555555","oid":"o"}`), "app:11111111-2222-3333-4444-555555555555"},
		{tok(`{}`), ""},
		{tok(`not json`), ""},
		{"not-a-token", ""},
		{"a.!!!.c", ""},
	} {
		if got := principal(tc.token); got != tc.want {
			t.Errorf("principal(%q) = %q, want %q", tc.token, got, tc.want)
		}
	}
}
