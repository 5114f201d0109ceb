package schema

import _ "embed"

// Plan is the plan's JSON Schema as written in plan.schema.json. It is draft-07, the newest draft the
// YAML language server (VS Code, Neovim and others) fully supports; its custom errorMessage keyword is
// the one those editors show, and the validator shows it too. Callers must not modify Plan.
//
//go:embed plan.schema.json
var Plan []byte

// URL is the schema's $id; diagnostics and the validator refer to the schema by it.
const URL = "https://github.com/iot-rollout/rollout/schema/plan.schema.json"
