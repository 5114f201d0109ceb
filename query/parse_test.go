package query

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// roundTrip checks that printing e and parsing the text gives e back.
func roundTrip(tb testing.TB, e Expr) string {
	tb.Helper()
	text := Format(e)
	back, err := ParseCondition(text)
	if err != nil {
		tb.Fatalf("Format gave %q, which does not parse: %v", text, err)
	}
	if !Equal(back, e) {
		tb.Fatalf("round trip changed the tree:\n text %q\n was  %#v\n now  %#v", text, e, back)
	}
	return text
}

func TestParseConditionValid(t *testing.T) {
	tests := []struct {
		src, want string // want: the canonical printed form
	}{
		{"*", "*"},
		{"  *  ", "*"},
		{"deviceId = 'MyDevice1'", "deviceId = 'MyDevice1'"},
		{"deviceId IN ['MyDevice1','MyDevice2']", "deviceId IN ['MyDevice1', 'MyDevice2']"},
		{"deviceId IN ['MyDevice1']", "deviceId IN ['MyDevice1']"},
		{"tags.x NIN [1, -2, 0x10, true, null, undefined]", "tags.x NIN [1, -2, 16, true, null, undefined]"},
		{"a = 1 and b = 2 or c = 3", "(a = 1 AND b = 2) OR c = 3"},
		{"a = 1 AND (b = 2 OR c = 3)", "a = 1 AND (b = 2 OR c = 3)"},
		{"(a = 1 AND b = 2) AND c = 3", "(a = 1 AND b = 2) AND c = 3"},
		{"a = 1 AND b = 2 AND c = 3", "a = 1 AND b = 2 AND c = 3"},
		{"not a = 1", "NOT (a = 1)"},
		{"NOT NOT a", "NOT (NOT a)"},
		{"a <> 1", "a != 1"},
		{"a != 1 AND b <= 2 AND c >= 3 AND d < 4 AND e > 5", "a != 1 AND b <= 2 AND c >= 3 AND d < 4 AND e > 5"},
		{"a + b * c - d / e % f > 0", "a + b * c - d / e % f > 0"},
		{"(a + b) * c = 1", "(a + b) * c = 1"},
		{"a - (b - c) = 1", "a - (b - c) = 1"},
		{"-a = --3", "-a = 3"},
		{"- -a = 1", "- -a = 1"},
		{"a - -3 = 1.5e3", "a - -3 = 1500"},
		{"x = 0.000001", "x = 1e-06"},
		{"x = 0XfF", "x = 255"},
		{`s = "dq \"x\" it's"`, `s = 'dq "x" it\'s'`},
		{`s = 'a\'b\\c\u0041\n'`, `s = 'a\'b\\cA\u000a'`},
		{`s = '\ud83d\ude00'`, "s = '\U0001F600'"},
		{"tags.[[group]].name = 'some_value'", "tags.[[group]].name = 'some_value'"},
		{"properties.desired.$metadata.x.$lastUpdated > '2020'", "properties.desired.$metadata.x.$lastUpdated > '2020'"},
		{"properties.reported.$version >= 3", "properties.reported.$version >= 3"},
		{"is_defined(tags.x)", "IS_DEFINED(tags.x)"},
		{"StartsWith(deviceId, 'test')", "STARTSWITH(deviceId, 'test')"},
		{"ENDSWITH(deviceId, 'x') = true", "ENDSWITH(deviceId, 'x') = true"},
		{"tags.true = 1", "tags.[[true]] = 1"},
		{"tags.[[a b]] = 1", "tags.[[a b]] = 1"},
		{"x = [1, [2, 'a']]", "x = [1, [2, 'a']]"},
		{"(x = 1) = true", "(x = 1) = true"},
		{"a IN [1] AND b NIN ['x']", "a IN [1] AND b NIN ['x']"},
		{"WHERE_x = 1", "WHERE_x = 1"},
		{"true", "true"},
		{"devices.jobs.status = 'completed'", "devices.jobs.status = 'completed'"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			e, err := ParseCondition(tt.src)
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tt.src, err)
			}
			if got := roundTrip(t, e); got != tt.want {
				t.Errorf("Format = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseConditionErrors(t *testing.T) {
	tests := []struct {
		src    string
		offset int
		msg    string // a substring of the message
	}{
		{"", 0, "expected a condition"},
		{"   ", 3, "expected a condition"},
		{"deviceId = ", 11, "expected a value after '='"},
		{"tags.region = AND x = 1", 14, "expected a value after '=', found keyword AND"},
		{"a = 'abc", 4, "unterminated string"},
		{`a = "abc`, 4, "unterminated string"},
		{`a = 'x\q'`, 6, "unknown escape"},
		{`a = '\u12'`, 5, "invalid \\u escape"},
		{"a == 1", 2, "use '=' to compare"},
		{"a = 1 && b = 2", 6, "use AND"},
		{"a = 1 || b = 2", 6, "use OR"},
		{"!a", 0, "use NOT"},
		{"deviceId IN ('a', 'b')", 12, "square brackets"},
		{"deviceId NOT IN ['a']", 9, "use NIN"},
		{"deviceId IN []", 13, "empty list"},
		{"deviceId IN ['a',]", 17, "expected a value after ','"},
		{"deviceId IN ['a' 'b']", 17, "expected ',' or ']'"},
		{"deviceId IN [x]", 13, "only constants"},
		{"deviceId IN 'a'", 12, "expected a list"},
		{"STARTS_WITH(deviceId, 'a')", 0, "use STARTSWITH"},
		{"CONTAINS(deviceId, 'a')", 0, "CONTAINS does not work"},
		{"LOWER(deviceId) = 'a'", 0, "message-routing function"},
		{"FOO(deviceId)", 0, "unknown function FOO"},
		{"STARTSWITH(deviceId)", 0, "takes 2 arguments, got 1"},
		{"IS_DEFINED('x')", 11, "takes a property path"},
		{"COUNT() > 1", 0, "only in the SELECT list"},
		{"tags.group.region = 'US'", 5, "write the property as [[group]]"},
		{"tags.[[group = 1", 5, "unterminated [[...]]"},
		{"tags.[[]] = 1", 5, "empty [[]]"},
		{"tags.2fa = 1", 5, "write it as [[2fa]]"},
		{"x = 12abc", 4, "invalid number"},
		{"x = 0x", 4, "hex digits"},
		{"x = 0xFFFFFFFFFFFFFFFFFF", 4, "too large"},
		{"x = 1e999", 4, "out of range"},
		{"a = 1 b = 2", 6, "expected AND, OR or end of condition, found 'b'"},
		{"a = 1 = 2", 6, "cannot be chained"},
		{"a = 1 ORDER BY a", 6, "ORDER BY is not supported"},
		{"a LIKE 'x%'", 2, "LIKE is not supported"},
		{"(a = 1", 6, "expected ')' to close the '(' at column 1"},
		{"a = 1)", 5, "found ')'"},
		{"SELECT * FROM devices WHERE a = 1", 0, "remove 'SELECT ... WHERE'"},
		{"FROM devices.modules WHERE moduleId = 'x'", 0, "remove 'FROM ... WHERE'"},
		{"WHERE a = 1", 0, "remove the leading WHERE"},
		{"* AND a = 1", 0, "must be the whole condition"},
		{"a = 1 AND *", 10, "expected a value after keyword AND, found '*'"},
		{"a = 1 AND", 9, "expected a value after keyword AND"},
		{"group = 1", 0, "expected a condition, found keyword GROUP"},
		{"a = 'x' €", 8, "unexpected character '€'"},
		{"a = \xff", 4, "invalid UTF-8"},
		{"a IS NULL", 2, "IS_DEFINED"},
		{"a = 1 NOT", 6, "NOT cannot follow a value"},
		{"tags. = 1", 6, "expected a property name after '.'"},
		{"x IN [-a]", 7, "expected a number after '-'"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			e, err := ParseCondition(tt.src)
			if err == nil {
				t.Fatalf("ParseCondition(%q) = %s, want an error", tt.src, Format(e))
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if perr.Offset != tt.offset || !strings.Contains(perr.Msg, tt.msg) {
				t.Errorf("error = %q at offset %d, want %q at offset %d", perr.Msg, perr.Offset, tt.msg, tt.offset)
			}
			if want := "column "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want it to start with %q", err.Error(), want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	_, err := ParseCondition("tags.region = ")
	if err == nil || err.Error() != "column 15: expected a value after '='" {
		t.Fatalf("got %v", err)
	}
}

func TestDepthLimit(t *testing.T) {
	for _, src := range []string{
		strings.Repeat("(", 100000) + "a = 1" + strings.Repeat(")", 100000),
		strings.Repeat("NOT ", 100000) + "a",
		"a = " + strings.Repeat("-", 100000) + "a",
		"a IN " + strings.Repeat("[", 100000),
		"a = 1" + strings.Repeat(" + 1", 200),
		strings.Repeat("STARTSWITH(", 1000) + "a",
	} {
		_, err := ParseCondition(src)
		var perr *Error
		if !errors.As(err, &perr) || !strings.Contains(perr.Msg, "nested too deeply") {
			t.Errorf("ParseCondition(%.20q...) = %v, want a nesting error", src, err)
		}
	}
	// Within the limit is fine, even when the printer adds parentheses, and long flat chains are not
	// nesting.
	alternating := "a = 1"
	for i := 0; i < maxDepth-2; i++ {
		op := " AND "
		if i%2 == 1 {
			op = " OR "
		}
		alternating = "b = 2" + op + "(" + alternating + ")"
	}
	ok := []string{
		strings.Repeat("NOT ", maxDepth-1) + "a",
		strings.Repeat("NOT ", maxDepth-2) + "a = 1",
		alternating,
		"a = 1" + strings.Repeat(" - 1", maxDepth-2),
		"a IN " + strings.Repeat("[", maxDepth-2) + "1" + strings.Repeat("]", maxDepth-2),
		strings.Repeat("(", 100) + "a = 1" + strings.Repeat(")", 100),
		"a = 1" + strings.Repeat(" AND a = 1", 20000),
	}
	for _, src := range ok {
		e, err := ParseCondition(src)
		if err != nil {
			t.Fatalf("ParseCondition(%.20q...): %v", src, err)
		}
		roundTrip(t, e)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"it's", `'it\'s'`},
		{`a\b`, `'a\\b'`},
		{`x' OR deviceId != '`, `'x\' OR deviceId != \''`},
		{`\'`, `'\\\''`},
		{"tab\there\x7f", `'tab\u0009here\u007f'`},
		{"é\"", `'é"'`},
	}
	for _, tt := range tests {
		got := Quote(tt.in)
		if got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
		e, err := ParseCondition("deviceId = " + got)
		if err != nil {
			t.Fatalf("Quote(%q) does not parse: %v", tt.in, err)
		}
		want := Comparison{Op: Eq, Left: Path{Segments: []string{"deviceId"}}, Right: String{Value: tt.in}}
		if !Equal(e, want) {
			t.Errorf("Quote(%q) parsed back as %#v", tt.in, e)
		}
	}
}

func TestBuilders(t *testing.T) {
	a := mustParse(t, "tags.env = 'prod'")
	b := mustParse(t, "tags.ring = 1 OR tags.ring = 2")
	c := mustParse(t, "x = 1 AND y = 2")
	tests := []struct {
		name string
		e    Expr
		want string
	}{
		{"And()", And(), "*"},
		{"And(All)", And(All{}, nil), "*"},
		{"And(a)", And(a, All{}), "tags.env = 'prod'"},
		{"And(a,b,c)", And(a, b, c), "tags.env = 'prod' AND (tags.ring = 1 OR tags.ring = 2) AND x = 1 AND y = 2"},
		{"And nested", And(And(a, c), Not(b)), "tags.env = 'prod' AND x = 1 AND y = 2 AND NOT (tags.ring = 1 OR tags.ring = 2)"},
		{"Or()", Or(), "false"},
		{"Or(All)", Or(a, All{}), "*"},
		{"Or(b,c)", Or(b, c), "tags.ring = 1 OR tags.ring = 2 OR (x = 1 AND y = 2)"},
		{"Not(All)", Not(All{}), "false"},
		{"Not(c)", Not(c), "NOT (x = 1 AND y = 2)"},
		{"In", In("deviceId", []string{"a", "it's", `b\`}), `deviceId IN ['a', 'it\'s', 'b\\']`},
		{"In nested path", In("tags.[x", []string{"a"}), "tags.[[[x]] IN ['a']"},
		{"In reserved", In("tags.group", []string{"a"}), "tags.[[group]] IN ['a']"},
		{"In empty", In("deviceId", nil), "false"},
		{"constants", And(Bool{Value: true}, a, Not(Or())), "tags.env = 'prod'"},
		{"And false", And(a, In("deviceId", nil), b), "false"},
		{"Or true", Or(a, Not(Bool{Value: false}), b), "true"},
		{"Or false dropped", Or(Or(), a, Bool{Value: false}), "tags.env = 'prod'"},
		{"wave", And(a, In("deviceId", []string{"d1"}), Not(Or(b, c))),
			"tags.env = 'prod' AND deviceId IN ['d1'] AND NOT (tags.ring = 1 OR tags.ring = 2 OR (x = 1 AND y = 2))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Format(tt.e); got != tt.want {
				t.Errorf("Format = %q, want %q", got, tt.want)
			}
			roundTrip(t, tt.e)
		})
	}
}

// TestUnprintablePaths checks that paths with no faithful text print as text that fails to parse.
func TestUnprintablePaths(t *testing.T) {
	for _, path := range []string{"", "a..b", "group", "'a'", "tags.x]] = 1 OR deviceId IN [['a']] AND tags.[[z", "tags.x]"} {
		e := In(path, []string{"v"})
		if got, err := ParseCondition(Format(e)); err == nil {
			t.Errorf("In(%q) printed %q, which parses as %#v", path, Format(e), got)
		}
	}
	if p := (Path{}); p.String() != "[[]]" {
		t.Errorf("empty Path prints %q", p.String())
	}
}

func mustParse(tb testing.TB, src string) Expr {
	tb.Helper()
	e, err := ParseCondition(src)
	if err != nil {
		tb.Fatalf("ParseCondition(%q): %v", src, err)
	}
	return e
}

// TestLargeInputs feeds a megabyte of several shapes: each must give a tree or an error quickly.
func TestLargeInputs(t *testing.T) {
	const mb = 1 << 20
	inputs := map[string]string{
		"open parens":        strings.Repeat("(", mb),
		"identifier":         strings.Repeat("a", mb),
		"path":               "a" + strings.Repeat(".b", mb/2),
		"string":             "a = '" + strings.Repeat("x", mb) + "'",
		"escapes":            "a = '" + strings.Repeat(`\'`, mb/2) + "'",
		"unterminated":       "a = '" + strings.Repeat(`\\`, mb/2),
		"escaped segments":   "a" + strings.Repeat(".[[x", mb/4),
		"list":               "a IN [" + strings.Repeat("1,", mb/2) + "1]",
		"garbage":            strings.Repeat("=<>!*[]'", mb/8),
		"number":             "a = " + strings.Repeat("9", mb),
		"ands":               "a = 1" + strings.Repeat(" AND b", mb/6),
		"select items":       "SELECT " + strings.Repeat("a, ", mb/3) + "b FROM devices",
		"aggregates":         "SELECT " + strings.Repeat("COUNT(), ", mb/9) + "COUNT() FROM devices",
		"nested not in list": "a IN [" + strings.Repeat("NOT ", mb/4),
	}
	for name, src := range inputs {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := ParseCondition(src)
			if err != nil {
				checkError(t, src, err)
			}
			if _, err := Parse(src); err != nil {
				checkError(t, src, err)
			}
			Warnings(src)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
