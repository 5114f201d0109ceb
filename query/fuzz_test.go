package query

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary text to ParseCondition and Parse. Every input must give a tree or a *Error
// inside the text; a tree must print as text that parses back to the same tree, and must evaluate
// without panicking. The seed corpus is every example of the table tests; inputs the fuzzer found
// interesting are kept under testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, tt := range conditionCases {
		f.Add(tt.src)
	}
	for _, tt := range queryCases {
		f.Add(tt.src)
	}
	f.Add("a = 1 AND (b = 2 OR NOT c IN [1, 'x', null]) AND -d * 2 + 0x1F >= 3e-2")
	f.Add("tags.[[a.b]].$c = 'it\\'s' OR STARTSWITH(x, \"y\")")
	docs := []Object{
		Map{"deviceId": "d", "tags": map[string]any{"a": 1.0, "b": "x", "c": nil, "d": []any{1.0}}},
		Map{},
		nil,
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := ParseCondition(src)
		if err != nil {
			checkError(t, src, err)
		} else {
			roundTrip(t, e)
			m := Compile(e)
			for _, d := range docs {
				m.Match(d)
			}
		}
		q, err := Parse(src)
		if err != nil {
			checkError(t, src, err)
			return
		}
		queryRoundTrip(t, q)
		for _, d := range docs {
			if q.Matcher().Match(d) && !q.Aggregate() {
				q.Project(d)
			}
		}
		q.Run(func(yield func(Object) bool) {
			for _, d := range docs {
				if !yield(d) {
					return
				}
			}
		})
	})
}

func checkError(tb testing.TB, src string, err error) {
	tb.Helper()
	var perr *Error
	if !errors.As(err, &perr) {
		tb.Fatalf("error %v for %q is %T, want *Error", err, src, err)
	}
	if perr.Offset < 0 || perr.Offset > len(src) {
		tb.Fatalf("error offset %d outside the %d-byte input %q", perr.Offset, len(src), src)
	}
	if perr.Msg == "" {
		tb.Fatalf("empty error message for %q", src)
	}
}

// FuzzQuote checks that no value can break out of its string literal: whatever the device id, the
// condition In builds parses back to exactly that list, and Quote reads back as the same string.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "it's", `a\`, `\'`, `' OR deviceId != '`, "\x00\n\x7f", "\xff\xfe", "é😀", `\u0027`} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		e := In("deviceId", []string{a, b})
		got, err := ParseCondition(Format(e))
		if err != nil {
			t.Fatalf("In(%q, %q) printed %q, which does not parse: %v", a, b, Format(e), err)
		}
		if !Equal(got, e) {
			t.Fatalf("In(%q, %q) printed %q, which parses as %#v", a, b, Format(e), got)
		}
		m := Compile(got)
		if !m.Match(Map{"deviceId": a}) || !m.Match(Map{"deviceId": b}) || m.Match(Map{"deviceId": a + b + "x"}) {
			t.Fatalf("In(%q, %q) does not select exactly its ids", a, b)
		}
	})
}
