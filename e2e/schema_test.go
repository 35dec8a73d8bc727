package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/apptest"
)

// committedSchema is the repository's schema.graphql, which gqlgen generates
// the server from and tools (and people) read.
func committedSchema(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fetchSchema(t *testing.T, s *apptest.Server) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(s.URL + "/graphql/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func loadSDL(t *testing.T, name string, sdl []byte) *ast.Schema {
	t.Helper()
	schema, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: string(sdl)})
	if err != nil {
		t.Fatalf("%s does not load as a schema: %v", name, err)
	}
	return schema
}

// firstDifference names the first line where served and committed differ.
func firstDifference(served, committed []byte) string {
	a, b := strings.Split(string(served), "\n"), strings.Split(string(committed), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y || i >= len(a) || i >= len(b) {
			return fmt.Sprintf("line %d: served %q, committed %q", i+1, x, y)
		}
	}
	return "same lines, different bytes"
}

func formatted(schema *ast.Schema) string {
	var buf bytes.Buffer
	formatter.NewFormatter(&buf).FormatSchema(schema)
	return buf.String()
}

// The SDL served at /graphql/schema.graphql is the committed schema.graphql,
// byte for byte: a schema.graphql edited without `go generate ./...` (or a
// generated server left behind) fails here. And it is the schema /graphql
// executes, compared as parsed schemas so that neither source text nor
// formatting can hide a difference.
func TestServedSchemaIsTheCommittedSchema(t *testing.T) {
	s := apptest.Start(t)
	resp, served := fetchSchema(t, s)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /graphql/schema.graphql: status %d: %s", resp.StatusCode, served)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/graphql; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	committed := committedSchema(t)
	if !bytes.Equal(served, committed) {
		t.Fatalf("the server serves a schema that differs from the committed schema.graphql (run `go generate ./...` and commit the result): %s", firstDifference(served, committed))
	}

	executable := formatted(graph.NewExecutableSchema(graph.Config{}).Schema())
	if got := formatted(loadSDL(t, "served", served)); got != executable {
		t.Errorf("the served SDL parses to a different schema than the one /graphql executes:\n--- served:\n%s\n--- executed:\n%s", got, executable)
	}

	// Conditional requests let tools poll cheaply.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql/schema.graphql", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: status %d, want 304", again.StatusCode)
	}
}

// With introspection off the SDL is hidden too: it tells the same.
func TestSchemaHiddenWithoutIntrospection(t *testing.T) {
	s := apptest.Start(t, "INTROSPECTION=false")
	if resp, body := fetchSchema(t, s); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("INTROSPECTION=false: GET /graphql/schema.graphql: status %d: %.200s", resp.StatusCode, body)
	}
}

// Every type, field, argument, enum value and input field of the committed
// schema has a description: generated clients and docs show them.
func TestSchemaIsFullyDescribed(t *testing.T) {
	schema := loadSDL(t, "schema.graphql", committedSchema(t))
	var missing []string
	check := func(what, desc string) {
		if strings.TrimSpace(desc) == "" {
			missing = append(missing, what)
		}
	}
	builtin := func(p *ast.Position) bool { return p == nil || p.Src == nil || p.Src.BuiltIn }
	var types int
	for name, def := range schema.Types {
		if def.BuiltIn || builtin(def.Position) {
			continue
		}
		types++
		check(string(def.Kind)+" "+name, def.Description)
		for _, f := range def.Fields {
			if builtin(f.Position) {
				continue // __typename and friends
			}
			check(name+"."+f.Name, f.Description)
			for _, a := range f.Arguments {
				check(name+"."+f.Name+"("+a.Name+")", a.Description)
			}
		}
		for _, v := range def.EnumValues {
			check(name+"."+v.Name, v.Description)
		}
	}
	for name, d := range schema.Directives {
		if builtin(d.Position) {
			continue
		}
		check("@"+name, d.Description)
		for _, a := range d.Arguments {
			check("@"+name+"("+a.Name+")", a.Description)
		}
	}
	if types < 20 {
		t.Fatalf("found only %d types in schema.graphql; is the walk broken?", types)
	}
	if len(missing) > 0 {
		t.Errorf("%d schema elements have no description:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}
