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
// Warnings points at constructs that parse but that the hub may reject (double quotes, ENDSWITH), for
// a validator that wants to say so.
//
// # Semantics
//
// Evaluation follows Microsoft's documentation and reported service behaviour and, where they are
// silent, Cosmos DB, from which the hub's language descends; each such choice is marked in the doc
// comment of the function that makes it:
//
//   - Three-valued logic: a missing property is undefined, any comparison with undefined is undefined,
//     NOT undefined is undefined, and a document matches only when the condition is Boolean true. So a
//     twin without tags.x matches neither tags.x = 'a' nor tags.x != 'a' nor NOT (tags.x = 'a').
//   - No coercion: comparing values of different types is undefined ('43' is not 43), and objects and
//     arrays do not compare at all. Strings order by bytes (code points), so '10.0' < '2.0'.
//   - Values are case-sensitive; property names are looked up exactly first and then case-insensitively
//     (DeviceId finds deviceId).
//   - FROM devices.jobs paths are written devices.jobs.<name> and resolve against the job record.
//
// # Limits
//
// Parsing is linear in the input, and nesting is capped (128 levels) so that no input can exhaust the
// stack: every input gives either a tree or a *Error.
package query
