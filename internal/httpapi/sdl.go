package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/parley-chat/parley/graph"
)

// SchemaPath is where the SDL is served. The name ends in .graphql because
// that is how GraphQL Code Generator's URL loader (and other graphql-tools
// based tooling) tells an SDL document from an endpoint to introspect.
const SchemaPath = "/graphql/schema.graphql"

// SchemaSDL returns the SDL of the schema /graphql executes.
//
// gqlgen compiles the schema's source text into graph/generated.go and parses
// it at start-up; every type definition keeps a pointer to that source. When
// the schema comes from one source, as it does now (schema.graphql), that
// text is returned byte for byte, descriptions, order and all: exactly the
// schema.graphql the binary was generated from, which a test compares with
// the committed file. Should the schema ever be split across files, the
// parsed schema is formatted instead, so what is served always describes
// what runs.
func SchemaSDL() []byte {
	return sdlOf(graph.NewExecutableSchema(graph.Config{}).Schema())
}

func sdlOf(schema *ast.Schema) []byte {
	names := make([]string, 0, len(schema.Types))
	for name := range schema.Types {
		names = append(names, name)
	}
	sort.Strings(names)
	var sources []*ast.Source
	seen := map[*ast.Source]bool{}
	for _, name := range names {
		def := schema.Types[name]
		if def.BuiltIn || def.Position == nil || def.Position.Src == nil || def.Position.Src.BuiltIn {
			continue
		}
		if src := def.Position.Src; !seen[src] {
			seen[src] = true
			sources = append(sources, src)
		}
	}
	if len(sources) == 1 {
		return []byte(sources[0].Input)
	}
	var buf bytes.Buffer
	formatter.NewFormatter(&buf).FormatSchema(schema)
	return buf.Bytes()
}

// schemaDocument serves sdl as a GraphQL document. It is public, like
// introspection, and hidden (404) when introspection is turned off, since
// it tells the same.
func schemaDocument(sdl []byte, hidden bool) http.Handler {
	sum := sha256.Sum256(sdl)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hidden {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		// application/graphql is the registered type of GraphQL documents;
		// browsers show it as a download, which is fine for a .graphql file.
		h.Set("Content-Type", "application/graphql; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "schema.graphql", time.Time{}, bytes.NewReader(sdl))
	})
}
