// Package query implements the IoT Hub query language that selects device twins, module twins and
// per-device job records: a lexer and parser with positioned errors, a syntax tree, a printer that
// gives back text the hub accepts, builders for composing conditions, and an evaluator.
//
// rollout needs the language three ways, and one implementation keeps them in agreement: `rollout
// validate` checks conditions offline (ParseCondition, whose *Error carries a byte offset), the engine
// composes wave conditions such as `fleet AND target AND NOT (earlier waves)` and `deviceId IN [...]`
// batches (And, Or, Not, In, Format, Quote), and the emulator answers queries and selects job targets
// (Parse, Compile, Matcher.Match, Query.Project, Query.Run).
//
// # Syntax
//
// Keywords and function names are case-insensitive. Strings take single or double quotes with
// backslash escapes; the printer always writes single quotes, because an observed report has the hub
// rejecting double quotes in some contexts. Numbers are decimal (with optional fraction and exponent,
// starting with a digit) or hex (0x1F). Path segments may start with '$' ($metadata, $version), and a
// segment that is a reserved word or not a plain identifier is escaped as [[name]] (tags.[[group]].x);
// the parser accepts that escape after a dot only. Lists take square brackets: `x IN ['a']`; the
// Cosmos-style `IN ('a')` is rejected with a hint, as are STARTS_WITH, CONTAINS, LIKE, ORDER BY and the
// message-routing-only functions. The supported functions are IS_DEFINED, STARTSWITH and ENDSWITH.
//
// Parsing is linear in the input, and nesting is capped (128 levels) so that no input can exhaust the
// stack: every input gives either a tree or a *Error.
package query
