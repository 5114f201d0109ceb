package query

import "strings"

// topLevel are the top-level properties of a device or module twin and of a device-job record.
var topLevel = map[string]bool{
	"deviceid": true, "moduleid": true, "etag": true, "deviceetag": true, "version": true, "status": true,
	"statusreason": true, "statusupdatetime": true, "connectionstate": true, "lastactivitytime": true,
	"cloudtodevicemessagecount": true, "authenticationtype": true, "x509thumbprint": true,
	"capabilities": true, "devicescope": true, "parentscopes": true, "modelid": true, "tags": true,
	"properties": true, "devices": true, "jobid": true, "jobtype": true, "starttimeutc": true,
	"endtimeutc": true, "createddatetimeutc": true, "lastupdateddatetimeutc": true, "outcome": true,
	"error": true,
}

// Warnings lists constructs in src that parse but are probably not what the author meant, or that the
// hub may not take the way the documentation says: a bare word compared with something (tags.region =
// eu reads eu as a property, which no twin has, so nothing matches: the quotes are missing),
// double-quoted strings (documented, yet reported failing in a hub query; the printer always writes
// single quotes) and ENDSWITH (renamed alongside STARTSWITH but never independently confirmed). Each
// warning is positioned like a parse error. Warnings does not report errors; call ParseCondition or
// Parse for those.
func Warnings(src string) []*Error {
	var out []*Error
	lx := lexer{src: src}
	var prev token
	for {
		t, err := lx.next()
		if err != nil || t.kind == tEOF {
			return out
		}
		compared := prev.kind >= tEq && prev.kind <= tGe
		prev = t
		switch {
		case compared && t.kind == tIdent && !isKeyword(t.val) && !isLiteralWord(t.val) && !topLevel[strings.ToLower(t.val)]:
			save := lx
			next, err := lx.next()
			lx = save
			if err == nil && next.kind != tDot && next.kind != tLParen {
				out = append(out, errorf(t.pos, "%s is read as a property name, and twins have no such top-level property: quote it (%s) to compare with a string", t.val, Quote(t.val)))
			}
		case t.kind == tString && src[t.pos] == '"':
			out = append(out, errorf(t.pos, "double-quoted string: IoT Hub documents double quotes but they were reported failing; prefer single quotes"))
		case t.kind == tIdent && strings.EqualFold(t.val, "ENDSWITH"):
			out = append(out, errorf(t.pos, "ENDSWITH is not independently confirmed to work in twin queries (STARTSWITH is)"))
		}
	}
}
