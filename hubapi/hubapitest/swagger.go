package hubapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// SwaggerFile is the official IoT Hub data-plane swagger (api-version 2021-04-12), kept in
// hubapi/testdata (see hubapi/testdata/README.md for its source and licence).
const SwaggerFile = "iothub-dataplane-2021-04-12.json"

// Swagger holds requests to the official IoT Hub service swagger: each request's path and method must
// be an operation of the file, its api-version right, its query and x-ms-/If-Match headers declared
// parameters of that operation, and its body valid against the operation's body schema.
//
// The check is the swagger with the corrections below, each backed by iothub-rest.md, and one
// tightening: definitions allow no properties they do not declare, so a misspelt field fails.
//   - Twin tags and desired/reported values may be any JSON, not only objects: real twins carry
//     string tags such as {"building":"43"} (§5.2 recording).
//   - CloudToDeviceMethod.payload and CloudToDeviceMethodResult.payload may be any JSON (§6).
//   - X509Thumbprint thumbprints may be null (§5.2 recording).
//   - GET /jobs/v2/query pages with x-ms-max-item-count / x-ms-continuation though the swagger omits
//     them (§0 item 1, §3.4).
type Swagger struct {
	ops      []*operation
	mu       sync.Mutex // guards compiler and schemas: handlers check requests concurrently
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
}

type operation struct {
	method   string
	segments []string // "{id}" for a parameter
	literals int
	params   []param
}

type param struct {
	Name     string          `json:"name"`
	In       string          `json:"in"`
	Required bool            `json:"required"`
	Schema   json.RawMessage `json:"schema"`
	Ref      string          `json:"$ref"`
}

// standardHeaders are request headers of HTTP and of every IoT Hub client, not operation parameters.
var standardHeaders = map[string]bool{
	"Authorization": true, "Accept": true, "Accept-Encoding": true, "User-Agent": true, "Content-Type": true,
	"Content-Length": true, "Request-Id": true, "X-Ms-Client-Request-Id": true, "Connection": true,
}

// LoadSwagger reads the swagger file at path (empty: SwaggerFile in hubapi/testdata, found from this
// source file's location, so it works from any package's test) and fails tb when it cannot.
func LoadSwagger(tb testing.TB, path string) *Swagger {
	tb.Helper()
	if path == "" {
		_, file, _, _ := runtime.Caller(0)
		path = filepath.Join(filepath.Dir(file), "..", "testdata", SwaggerFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading the IoT Hub swagger: %v", err)
	}
	s, err := ParseSwagger(data)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return s
}

// ParseSwagger builds the checker from the swagger JSON.
func ParseSwagger(data []byte) (*Swagger, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	defs, _ := doc["definitions"].(map[string]any)
	if defs == nil {
		return nil, fmt.Errorf("no definitions")
	}
	correct(defs)
	fixed, err := json.Marshal(map[string]any{"definitions": defs})
	if err != nil {
		return nil, err
	}
	s := &Swagger{compiler: jsonschema.NewCompiler(), schemas: map[string]*jsonschema.Schema{}}
	s.compiler.Draft = jsonschema.Draft4
	if err := s.compiler.AddResource("swagger.json", bytes.NewReader(fixed)); err != nil {
		return nil, err
	}
	var raw struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Parameters map[string]param                      `json:"parameters"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	for path, methods := range raw.Paths {
		for method, body := range methods {
			if method == "parameters" {
				continue
			}
			var op struct {
				Parameters []param `json:"parameters"`
			}
			if err := json.Unmarshal(body, &op); err != nil {
				return nil, fmt.Errorf("%s %s: %v", method, path, err)
			}
			o := &operation{method: strings.ToUpper(method), segments: strings.Split(strings.Trim(path, "/"), "/")}
			for _, seg := range o.segments {
				if !strings.HasPrefix(seg, "{") {
					o.literals++
				}
			}
			for _, p := range op.Parameters {
				if p.Ref != "" {
					p = raw.Parameters[strings.TrimPrefix(p.Ref, "#/parameters/")]
				}
				o.params = append(o.params, p)
			}
			if o.method == "GET" && path == "/jobs/v2/query" {
				o.params = append(o.params, param{Name: "x-ms-continuation", In: "header"}, param{Name: "x-ms-max-item-count", In: "header"})
			}
			s.ops = append(s.ops, o)
		}
	}
	// More literal segments first, so /jobs/v2/query wins over /jobs/v2/{id}.
	sort.SliceStable(s.ops, func(i, j int) bool { return s.ops[i].literals > s.ops[j].literals })
	return s, nil
}

// correct applies the corrections listed on Swagger and the no-extra-properties tightening.
func correct(defs map[string]any) {
	anyJSON := map[string]any{}
	prop := func(def, name string) map[string]any {
		d, _ := defs[def].(map[string]any)
		props, _ := d["properties"].(map[string]any)
		p, _ := props[name].(map[string]any)
		return p
	}
	if p := prop("Twin", "tags"); p != nil {
		p["additionalProperties"] = anyJSON
	}
	for _, n := range []string{"desired", "reported"} {
		if p := prop("TwinProperties", n); p != nil {
			p["additionalProperties"] = anyJSON
		}
	}
	for _, d := range []string{"CloudToDeviceMethod", "CloudToDeviceMethodResult"} {
		if p := prop(d, "payload"); p != nil {
			delete(p, "type")
		}
	}
	for _, n := range []string{"primaryThumbprint", "secondaryThumbprint"} {
		if p := prop("X509Thumbprint", n); p != nil {
			p["type"] = []any{"string", "null"}
		}
	}
	for _, d := range defs {
		if m, ok := d.(map[string]any); ok {
			if _, has := m["properties"]; has {
				if _, set := m["additionalProperties"]; !set {
					m["additionalProperties"] = false
				}
			}
		}
	}
}

// Check reports what in the request does not agree with the swagger; nil when all does. body is the
// request body (the caller has read it from r).
func (s *Swagger) Check(r *http.Request, body []byte) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	path := r.URL.EscapedPath()
	op := s.match(r.Method, path)
	if op == nil {
		return fmt.Errorf("%s %s is not an operation of the swagger", r.Method, path)
	}
	declared := map[string]param{}
	for _, p := range op.params {
		declared[p.In+":"+strings.ToLower(p.Name)] = p
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v != "2021-04-12" {
		bad("api-version is %q, want 2021-04-12", v)
	}
	for k := range q {
		if _, ok := declared["query:"+strings.ToLower(k)]; !ok {
			bad("query parameter %q is not declared", k)
		}
	}
	for k := range r.Header {
		if !standardHeaders[http.CanonicalHeaderKey(k)] {
			if _, ok := declared["header:"+strings.ToLower(k)]; !ok {
				bad("header %s is not declared", k)
			}
		}
	}
	var bodyParam *param
	for i, p := range op.params {
		switch p.In {
		case "body":
			bodyParam = &op.params[i]
		case "query":
			if p.Required && !q.Has(p.Name) {
				bad("required query parameter %q is missing", p.Name)
			}
		case "header":
			if p.Required && r.Header.Get(p.Name) == "" {
				bad("required header %s is missing", p.Name)
			}
		}
	}
	switch {
	case bodyParam == nil && len(bytes.TrimSpace(body)) > 0:
		bad("the operation takes no body, got %d bytes", len(body))
	case bodyParam != nil && len(bytes.TrimSpace(body)) == 0:
		if bodyParam.Required {
			bad("the body (%s) is missing", bodyParam.Name)
		}
	case bodyParam != nil:
		if err := s.validate(bodyParam.Schema, body); err != nil {
			bad("body: %v", err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s %s: %s", r.Method, path, strings.Join(problems, "; "))
	}
	return nil
}

// Validate checks a JSON document against a swagger definition, e.g. "JobRequest".
func (s *Swagger) Validate(definition string, doc []byte) error {
	ref, _ := json.Marshal(map[string]string{"$ref": "#/definitions/" + definition})
	return s.validate(ref, doc)
}

func (s *Swagger) validate(schema json.RawMessage, body []byte) error {
	var ref struct {
		Ref string `json:"$ref"`
	}
	if err := json.Unmarshal(schema, &ref); err != nil || !strings.HasPrefix(ref.Ref, "#/definitions/") {
		return fmt.Errorf("unsupported body schema %s", schema)
	}
	s.mu.Lock()
	sch, ok := s.schemas[ref.Ref]
	if !ok {
		var err error
		if sch, err = s.compiler.Compile("swagger.json" + ref.Ref); err != nil {
			s.mu.Unlock()
			return err
		}
		s.schemas[ref.Ref] = sch
	}
	s.mu.Unlock()
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	return sch.Validate(v)
}

func (s *Swagger) match(method, path string) *operation {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, op := range s.ops {
		if op.method != method || len(op.segments) != len(segs) {
			continue
		}
		ok := true
		for i, seg := range op.segments {
			if strings.HasPrefix(seg, "{") {
				ok = segs[i] != ""
			} else {
				ok = seg == segs[i]
			}
			if !ok {
				break
			}
		}
		if ok {
			return op
		}
	}
	return nil
}
