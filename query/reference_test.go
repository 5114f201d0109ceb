package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"iter"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// docSets are the fixture documents: twins, module twins and device-job records, by name.
type docSets map[string]map[string]Map

func loadDocs(tb testing.TB, useNumber bool) docSets {
	tb.Helper()
	data, err := os.ReadFile("testdata/docs.json")
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if useNumber {
		dec.UseNumber()
	}
	var sets docSets
	if err := dec.Decode(&sets); err != nil {
		tb.Fatal(err)
	}
	return sets
}

// seq yields the documents of a set in name order.
func (s docSets) seq(set string) iter.Seq[Object] {
	return func(yield func(Object) bool) {
		for _, name := range slices.Sorted(maps.Keys(s[set])) {
			if !yield(s[set][name]) {
				return
			}
		}
	}
}

// conditionCases are the reference's condition examples (iothub-query-and-jobs.md §1.2-1.5, §2.2, §5),
// each with the fixture documents it must match; every other document of the set must not match.
var conditionCases = []struct {
	name  string
	src   string
	err   string // non-empty: the condition is invalid and the message contains this
	set   string // "twins" when empty
	match []string
}{
	// §2.2 queryCondition examples.
	{name: "job condition equals", src: "deviceId = 'MyDevice1'", match: []string{"dev1"}},
	{name: "job condition IN two", src: "deviceId IN ['MyDevice1','MyDevice2']", match: []string{"dev1", "dev2"}},
	{name: "job condition IN one", src: "deviceId IN ['MyDevice1']", match: []string{"dev1"}},
	{name: "all devices star", src: "*", match: []string{"dev1", "dev2", "test3"}},
	{name: "all devices 2017 workaround", src: "IS_DEFINED(DeviceId)", match: []string{"dev1", "dev2", "test3"}},
	{name: "full query as condition", src: "SELECT * FROM devices", err: "remove 'SELECT ... WHERE'"},
	{name: "module prefix as condition", src: "FROM devices.modules WHERE ModuleId = 'X'", err: "remove 'FROM ... WHERE'"},
	// §1.2 operators, constants, escapes.
	{name: "NIN", src: "deviceId NIN ['MyDevice1']", match: []string{"dev2", "test3"}},
	{name: "case-insensitive keywords", src: "tags.region = 'eu' and not (tags.env != 'prod') or tags.ring in [2]", match: []string{"dev1", "dev2"}},
	{name: "hex number", src: "tags.building = 0x2B", match: []string{"dev1"}},
	{name: "arithmetic", src: "properties.reported.battery * 2 + 0x0 >= 100 - 0", match: []string{"dev1"}},
	{name: "arithmetic on a string is undefined", src: "properties.reported.battery + 1 > 0", match: []string{"dev1", "dev2"}},
	{name: "true constant", src: "capabilities.iotEdge = false", match: []string{"dev1"}},
	{name: "null constant", src: "tags.nullable = null", match: []string{"dev2"}},
	{name: "undefined constant never compares", src: "tags.missing = undefined"},
	{name: "escaped quote", src: `deviceId != 'it\'s'`, match: []string{"dev1", "dev2", "test3"}},
	{name: "unicode escape", src: `deviceId = 'MyDevice\u0031'`, match: []string{"dev1"}},
	{name: "double quotes accepted", src: `deviceId = "MyDevice2"`, match: []string{"dev2"}},
	{name: "SQL doubled quote is unconfirmed, rejected", src: "deviceId = 'O''Brien'", err: `escape a quote inside a string as \'`},
	{name: "IN with parentheses", src: "deviceId IN ('MyDevice1')", err: "square brackets"},
	{name: "dollar segments", src: "properties.desired.$metadata.$lastUpdated > '2023' AND properties.reported.$version = 7", match: []string{"dev1"}},
	{name: "dollar nested", src: "properties.reported.$metadata.firmware.$lastUpdated < '2023-05-01T10'", match: []string{"dev1"}},
	// §1.3 functions.
	{name: "STARTSWITH", src: "STARTSWITH(deviceId, 'test')", match: []string{"test3"}},
	{name: "ENDSWITH", src: "endswith(deviceId, 'Device2')", match: []string{"dev2"}},
	{name: "STARTSWITH case-sensitive", src: "STARTSWITH(deviceId, 'Test')"},
	{name: "STARTS_WITH rejected", src: "STARTS_WITH(deviceId, 'test')", err: "use STARTSWITH"},
	{name: "CONTAINS rejected", src: "CONTAINS(deviceId, 'Device')", err: "CONTAINS does not work"},
	{name: "routing functions rejected", src: "UPPER(deviceId) = 'MYDEVICE1'", err: "message-routing function"},
	{name: "IS_DEFINED includes null", src: "IS_DEFINED(tags.nullable)", match: []string{"dev2"}},
	{name: "NOT IS_DEFINED", src: "NOT IS_DEFINED(tags.region)", match: []string{"test3"}},
	// §1.4 semantics.
	{name: "primitives compare across paths", src: "properties.desired.config = properties.reported.config", match: []string{"dev1"}},
	{name: "objects do not compare", src: "properties.desired.config != properties.reported.config"},
	{name: "no coercion string", src: "tags.building = '43'", match: []string{"dev2"}},
	{name: "no coercion number", src: "tags.building = 43", match: []string{"dev1"}},
	{name: "no coercion for !=", src: "tags.building != 43"},
	{name: "ordinal string order", src: "properties.reported.firmware.version < '2.0'", match: []string{"dev2"}},
	{name: "ISO dates as strings", src: "lastActivityTime > '2022-06-01'", match: []string{"dev1"}},
	{name: "values case-sensitive", src: "tags.region = 'EU'"},
	{name: "names case-insensitive", src: "DeviceId = 'MyDevice1' AND Tags.Region = 'eu' AND PROPERTIES.reported.FIRMWARE.version = '2.3.9'", match: []string{"dev1"}},
	{name: "undefined excluded from =", src: "tags.region = 'eu'", match: []string{"dev1"}},
	{name: "undefined excluded from !=", src: "tags.region != 'eu'", match: []string{"dev2"}},
	{name: "NOT of undefined is undefined", src: "NOT (tags.region = 'eu')", match: []string{"dev2"}},
	{name: "undefined OR true", src: "tags.region = 'eu' OR status = 'disabled'", match: []string{"dev1", "test3"}},
	{name: "undefined AND true stays undefined under NOT", src: "NOT (tags.region = 'eu' AND status = 'disabled')", match: []string{"dev1", "dev2"}},
	{name: "undefined AND false is false, NOT makes it true", src: "NOT (tags.region = 'eu' AND status = 'enabled')", match: []string{"dev2", "test3"}},
	{name: "non-Boolean condition is false", src: "deviceId"},
	{name: "Boolean path condition", src: "capabilities.iotEdge = false OR tags.ring", match: []string{"dev1"}},
	// §1.5 reserved word group.
	{name: "group unescaped", src: "tags.group.region = 'US'", err: "[[group]]"},
	{name: "group escaped", src: "tags.[[group]].name = 'some_value'", match: []string{"dev1"}},
	// §5 validator checklist.
	{name: "== rejected", src: "deviceId == 'MyDevice1'", err: "use '='"},
	{name: "&& rejected", src: "tags.region = 'eu' && tags.env = 'prod'", err: "use AND"},
	{name: "LIKE rejected", src: "deviceId LIKE 'My%'", err: "LIKE is not supported"},
	{name: "ORDER BY rejected", src: "tags.region = 'eu' ORDER BY deviceId", err: "ORDER BY is not supported"},
	{name: "dangling operator", src: "tags.region = 'eu' AND", err: "expected a value after keyword AND"},
	{name: "dangling comparison", src: "tags.region =", err: "expected a value after '='"},
	{name: "unterminated string", src: "tags.region = 'eu", err: "unterminated string"},
	{name: "true/false/null accepted", src: "tags.x = true OR tags.x = false OR tags.x = null", set: "twins"},
	// The benchmark condition (issue acceptance).
	{name: "benchmark condition", src: "tags.region = 'eu' AND properties.reported.firmware.version < '2.4.0'", match: []string{"dev1"}},
	// §1.1/§2.6 device-job conditions: a bare condition evaluated with Compile sees the record as is.
	{name: "job record status", src: "status = 'canceled'", set: "jobs", match: []string{"jobC"}},
	{name: "job record status case-sensitive", src: "status = 'Completed'", set: "jobs"},
	{name: "job error code", src: "error.code = 'DeviceNotOnline'", set: "jobs", match: []string{"jobB"}},
	{name: "job method status", src: "outcome.deviceMethodResponse.status >= 200 AND outcome.deviceMethodResponse.status < 300", set: "jobs", match: []string{"jobA"}},
	// Module twins.
	{name: "module twins", src: "properties.reported.status = 'scanning' and deviceId IN ['device1', 'device2']", set: "modules", match: []string{"mod1"}},
	{name: "module id", src: "ModuleId = 'reader'", set: "modules", match: []string{"mod3"}},
}

func TestReferenceConditions(t *testing.T) {
	for _, useNumber := range []bool{false, true} {
		docs := loadDocs(t, useNumber)
		for _, tt := range conditionCases {
			t.Run(tt.name, func(t *testing.T) {
				e, err := ParseCondition(tt.src)
				if tt.err != "" {
					var perr *Error
					if !errors.As(err, &perr) || !strings.Contains(perr.Msg, tt.err) {
						t.Fatalf("ParseCondition(%q) error = %v, want one containing %q", tt.src, err, tt.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ParseCondition(%q): %v", tt.src, err)
				}
				roundTrip(t, e)
				set := tt.set
				if set == "" {
					set = "twins"
				}
				m := Compile(e)
				var got []string
				for name, doc := range docs[set] {
					if m.Match(doc) {
						got = append(got, name)
					}
				}
				sort.Strings(got)
				want := append([]string(nil), tt.match...)
				sort.Strings(want)
				if !slices.Equal(got, want) {
					t.Errorf("%q (json.Number %v) matches %v, want %v", tt.src, useNumber, got, want)
				}
			})
		}
	}
}

// queryCases are the reference's whole-query examples with the rows they give over the fixtures.
var queryCases = []struct {
	name string
	src  string
	err  string
	rows string // JSON array of rows, compared after encoding
	set  string
}{
	{name: "select star", src: "SELECT * FROM devices WHERE deviceId = 'MyDevice2'",
		rows: `[{"deviceId":"MyDevice2"}]`},
	{name: "projection keeps stored key case", src: "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled'",
		rows: `[{"deviceId":"MyDevice1","lastActivityTime":"2023-05-01T10:00:00.1234567Z"},{"deviceId":"MyDevice2","lastActivityTime":"2022-01-01T00:00:00Z"}]`},
	{name: "projection alias and undefined", src: "select top 2 deviceId as id, tags.region from devices",
		rows: `[{"id":"MyDevice1","region":"eu"},{"id":"MyDevice2","region":"us"}]`},
	{name: "count", src: "SELECT COUNT() AS totalNumberOfDevices FROM devices",
		rows: `[{"totalNumberOfDevices":3}]`},
	{name: "count none", src: "SELECT COUNT() AS n, SUM(properties.reported.$version) AS s, AVG(properties.reported.$version) AS a FROM devices WHERE deviceId = 'nope'",
		rows: `[{"n":0,"s":0}]`},
	{name: "group by", src: "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
		rows: `[{"numberOfDevices":2,"status":"Success"},{"numberOfDevices":1,"status":"Pending"}]`},
	{name: "aggregates", src: "SELECT SUM(properties.reported.$version), AVG(properties.reported.$version) AS avg, MIN(tags.building) AS lo, MAX(deviceId) AS hi, SUM(properties.reported.battery) AS bad FROM devices",
		rows: `[{"$1":17,"avg":5.666666666666667,"hi":"testDevice3","lo":43}]`},
	{name: "group by undefined group", src: "SELECT tags.region, COUNT() AS n FROM devices GROUP BY tags.region",
		rows: `[{"n":1,"region":"eu"},{"n":1,"region":"us"},{"n":1}]`},
	{name: "jobs", set: "jobs", src: "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job01'",
		rows: `[{"deviceId":"MyDevice1"},{"deviceId":"MyDevice2"}]`},
	{name: "jobs created", set: "jobs", src: "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'MyDevice1' AND devices.jobs.jobType = 'scheduleUpdateTwin' AND devices.jobs.status = 'canceled' AND devices.jobs.createdTimeUtc > '2016-07-01'",
		rows: `[{"deviceId":"MyDevice1"}]`},
	{name: "jobs doc example", set: "jobs", src: "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'MyDevice1' AND devices.jobs.createdTimeUtc > '2016-09-01'",
		rows: `[{"deviceId":"MyDevice1"}]`},
	{name: "modules", set: "modules", src: "Select * from devices.modules where properties.reported.status = 'scanning' and deviceId IN ['device1', 'device2']",
		rows: `[{"deviceId":"device1"}]`},
	{name: "startswith", src: "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'test')", rows: `[{"deviceId":"testDevice3"}]`},
	{name: "group escape", src: "SELECT * FROM devices WHERE tags.[[group]].name = 'some_value'", rows: `[{"deviceId":"MyDevice1"}]`},
	{name: "top 0", src: "SELECT TOP 0 * FROM devices", rows: `[]`},

	{name: "jobs projection", src: "SELECT deviceId FROM devices.jobs", err: "only SELECT *"},
	{name: "jobs mixing twin properties", src: "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'x' AND tags.region = 'eu'", err: "cannot test twin properties"},
	{name: "jobs group by", src: "SELECT * FROM devices.jobs GROUP BY devices.jobs.status", err: "GROUP BY is supported only FROM devices"},
	{name: "job path in twins", src: "SELECT * FROM devices WHERE devices.jobs.status = 'failed'", err: "only FROM devices.jobs"},
	{name: "modules group by", src: "SELECT status, COUNT() AS n FROM devices.modules GROUP BY status", err: "GROUP BY is supported only FROM devices"},
	{name: "group by star", src: "SELECT * FROM devices GROUP BY status", err: "not SELECT *"},
	{name: "group by other path", src: "SELECT status, COUNT() FROM devices GROUP BY tags.region", err: "must be the GROUP BY path"},
	{name: "aggregate without group", src: "SELECT status, COUNT() FROM devices", err: "add GROUP BY status"},
	{name: "order by", src: "SELECT * FROM devices WHERE status = 'enabled' ORDER BY deviceId", err: "ORDER BY is not supported"},
	{name: "order by alone", src: "SELECT * FROM devices ORDER BY deviceId", err: "ORDER BY is not supported"},
	{name: "bad collection", src: "SELECT * FROM twins", err: "expected devices, devices.modules or devices.jobs"},
	{name: "no select", src: "deviceId = 'x'", err: "expected SELECT"},
	{name: "count star", src: "SELECT COUNT(*) FROM devices", err: "write COUNT()"},
	{name: "duplicate key", src: "SELECT tags.status, status FROM devices", err: `two columns are named "status"`},
	{name: "bad top", src: "SELECT TOP 1.5 * FROM devices", err: "whole number after TOP"},
	{name: "empty where", src: "SELECT * FROM devices WHERE", err: "expected a condition after WHERE"},
	{name: "trailing", src: "SELECT * FROM devices WHERE a = 1 b", err: "expected AND, OR or GROUP BY or end of query"},
	{name: "starts_with", src: "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'test')", err: "use STARTSWITH"},
}

func TestReferenceQueries(t *testing.T) {
	docs := loadDocs(t, false)
	for _, tt := range queryCases {
		t.Run(tt.name, func(t *testing.T) {
			q, err := Parse(tt.src)
			if tt.err != "" {
				var perr *Error
				if !errors.As(err, &perr) || !strings.Contains(perr.Msg, tt.err) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.src, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.src, err)
			}
			queryRoundTrip(t, q)
			set := tt.set
			if set == "" {
				set = "twins"
				if q.Collection() == Modules {
					set = "modules"
				}
			}
			rows := q.Run(docs.seq(set))
			if q.SelectAll() {
				// Compare only the device ids of whole documents.
				for i, r := range rows {
					rows[i] = map[string]any{"deviceId": r["deviceId"]}
				}
			}
			got, err := json.Marshal(rows)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.rows {
				t.Errorf("rows = %s\nwant   %s", got, tt.rows)
			}
		})
	}
}

// queryRoundTrip checks that a query prints as text that parses back to the same query.
func queryRoundTrip(tb testing.TB, q *Query) {
	tb.Helper()
	text := q.String()
	back, err := Parse(text)
	if err != nil {
		tb.Fatalf("String gave %q, which does not parse: %v", text, err)
	}
	a, b := *q, *back
	a.matcher, b.matcher = nil, nil
	if len(a.keys) == 0 && len(b.keys) == 0 {
		a.keys, b.keys = nil, nil
	}
	if !reflect.DeepEqual(a, b) {
		tb.Fatalf("round trip changed the query:\n text %q\n was  %#v\n now  %#v", text, a, b)
	}
}

func TestQueryAccessors(t *testing.T) {
	q, err := Parse("SELECT TOP 5 tags.region AS r, COUNT() FROM devices WHERE tags.env = 'prod' GROUP BY tags.region")
	if err != nil {
		t.Fatal(err)
	}
	if q.Top() != 5 || q.SelectAll() || !q.Aggregate() || q.Collection() != Devices {
		t.Errorf("accessors: top %d, all %v, aggregate %v, from %v", q.Top(), q.SelectAll(), q.Aggregate(), q.Collection())
	}
	if g, ok := q.GroupBy(); !ok || g.String() != "tags.region" {
		t.Errorf("GroupBy = %v, %v", g, ok)
	}
	if got := Format(q.Where()); got != "tags.env = 'prod'" {
		t.Errorf("Where = %q", got)
	}
	if got := q.String(); got != "SELECT TOP 5 tags.region AS r, COUNT() FROM devices WHERE tags.env = 'prod' GROUP BY tags.region" {
		t.Errorf("String = %q", got)
	}
	q, err = Parse("select * from devices")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.Where().(All); !ok || q.Top() != -1 || !q.SelectAll() || q.Aggregate() {
		t.Errorf("select *: where %#v top %d", q.Where(), q.Top())
	}
	if !q.Matcher().Match(Map{}) {
		t.Error("a query without WHERE must match every document")
	}
	row := (&Query{items: []SelectItem{{Path: NewPath("a.b")}}, keys: []string{"b"}, where: All{}, matcher: Compile(nil)}).Project(Map{"A": map[string]any{"B": 1}})
	if !reflect.DeepEqual(row, map[string]any{"B": 1}) {
		t.Errorf("Project = %v", row)
	}
}
