package schema

import _ "embed"

// Plan is the plan's JSON Schema (draft 2020-12) as written in plan.schema.json. Callers must not
// modify it.
//
//go:embed plan.schema.json
var Plan []byte

// URL is the schema's $id; diagnostics and the validator refer to the schema by it.
const URL = "https://github.com/iot-rollout/rollout/schema/plan.schema.json"
