// Package schema holds the rollout plan's JSON Schema, the single source of field names, types, enums,
// patterns and defaults. It is embedded so that `rollout schema` and the plan loader need no file on
// disk, and so that editors (through the yaml-language-server comment in each plan) see exactly what
// the validator enforces.
package schema
