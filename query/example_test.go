package query_test

import (
	"errors"
	"fmt"

	"github.com/iot-rollout/rollout/query"
)

// A wave's condition: the fleet, this wave's target, and not the devices earlier waves took.
func ExampleAnd() {
	fleet, _ := query.ParseCondition("tags.env = 'prod'")
	target, _ := query.ParseCondition("tags.ring = 2")
	earlier, _ := query.ParseCondition("tags.ring IN [0, 1]")
	batch := query.In("deviceId", []string{"dev-1", "o'brien"})
	fmt.Println(query.Format(query.And(fleet, target, query.Not(earlier), batch)))
	// Output: tags.env = 'prod' AND tags.ring = 2 AND NOT (tags.ring IN [0, 1]) AND deviceId IN ['dev-1', 'o\'brien']
}

func ExampleParseCondition_error() {
	_, err := query.ParseCondition("tags.region = ")
	fmt.Println(err)
	var perr *query.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Offset)
	}
	// Output:
	// column 15: expected a value after '='
	// 14
}

func ExampleMatcher_Match() {
	m := query.Compile(mustParse("tags.region = 'eu' AND properties.reported.firmware.version < '2.4.0'"))
	twin := query.Map{
		"deviceId":   "dev-1",
		"tags":       map[string]any{"region": "eu"},
		"properties": map[string]any{"reported": map[string]any{"firmware": map[string]any{"version": "2.3.9"}}},
	}
	fmt.Println(m.Match(twin), m.Match(query.Map{"deviceId": "dev-2"}))
	// Output: true false
}

func ExampleQuery_Run() {
	q, err := query.Parse("SELECT tags.region AS region, COUNT() AS n FROM devices GROUP BY tags.region")
	if err != nil {
		panic(err)
	}
	twins := []query.Object{
		query.Map{"tags": map[string]any{"region": "eu"}},
		query.Map{"tags": map[string]any{"region": "us"}},
		query.Map{"tags": map[string]any{"region": "eu"}},
	}
	for _, row := range q.Run(func(yield func(query.Object) bool) {
		for _, t := range twins {
			if !yield(t) {
				return
			}
		}
	}) {
		fmt.Println(row["region"], row["n"])
	}
	// Output:
	// eu 2
	// us 1
}

func mustParse(s string) query.Expr {
	e, err := query.ParseCondition(s)
	if err != nil {
		panic(err)
	}
	return e
}
