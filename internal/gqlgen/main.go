// Command gqlgen is `go tool gqlgen generate` with the project's execution
// policy added; `go generate` runs it (generate.go).
//
// gqlgen runs every resolver field (and every method field taking a
// context) in a goroutine of its own, and marshals every element of a list
// of objects in a goroutine of its own. That concurrency is what lets a
// dataloader collect the keys of a list's elements into one batch; where the
// parent resolver has already fetched everything the elements read, it buys
// nothing and costs a goroutine, its stack growth and scheduling per field
// and element: about 150 per page of the conversation list, the largest
// single share of that request's CPU.
//
// So, for the types named below and only for them:
//   - inlineObjects: the fields of the object run on the caller's goroutine,
//     one after the other (gqlgen's Object.DisableConcurrency, which it sets
//     itself for Mutation).
//   - inlineLists: lists of the type are marshaled element by element on the
//     caller's goroutine (marshalSliceInline in package graph, instead of
//     graphql.MarshalSliceConcurrently in the list marshaler), unless the
//     list's parent object says its elements are not all in memory.
//
// A type belongs here only if nothing under it can wait for a batch that
// other elements or fields would have joined: each entry says why. Adding a
// resolver field to one of these types means checking that again.
//
// Independently of the schema, object marshalers that can hold no @defer'd
// field do not build a deferred group (dropEmptyDeferred).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"sort"

	"github.com/99designs/gqlgen/api"
	"github.com/99designs/gqlgen/codegen"
	"github.com/99designs/gqlgen/codegen/config"
)

// inlineObjects: objects whose fields run inline.
var inlineObjects = map[string]string{
	// participants, readReceipts, lastMessage and unreadCount come from the
	// response's loaders: prefetched by the conversations list, and enqueued
	// together (warmConversation) before the first field runs wherever a
	// single conversation is returned, so inline fields wait for one batch
	// round at most, as concurrent ones did.
	"Conversation": "fields served from prefetched or warmed loaders",
	// sender, attachments and conversation likewise: prefetched or primed
	// by the conversations and messages resolvers, enqueued together by
	// warmMessage wherever a single message is returned.
	"Message": "fields served from prefetched, primed or warmed loaders",
}

// inlineLists: element types whose lists are marshaled in order.
var inlineLists = map[string]string{
	"User":        "no resolver fields",
	"Attachment":  "url is computed from the row",
	"ReadReceipt": "user comes from the participants batch, which primes the user loader",
	// The conversations resolver prefetches what its elements read
	// (participants, readReceipts, lastMessage with its sender and
	// attachments, unreadCount; the conversations themselves are primed),
	// and where the selection reads anything else, says so
	// (ConversationConnection.ElementsInMemory): marshalSliceInline then
	// falls back to a goroutine per element.
	"ConversationEdge": "the conversations resolver prefetches what the elements read, or says it did not",
}

// inlineSliceFunc is what the rewritten list marshalers call instead of
// graphql.MarshalSliceConcurrently; same parameters.
const inlineSliceFunc = "marshalSliceInline"

func main() {
	configFile := flag.String("config", "gqlgen.yml", "gqlgen configuration")
	flag.Parse()
	if err := run(*configFile); err != nil {
		fmt.Fprintln(os.Stderr, "gqlgen:", err)
		os.Exit(1)
	}
}

func run(configFile string) error {
	cfg, err := config.LoadConfig(configFile)
	if err != nil {
		return fmt.Errorf("load %s: %w", configFile, err)
	}
	p := &policy{}
	if err := api.Generate(cfg, api.AddPlugin(p)); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	return rewrite(cfg.Exec.Filename, p.listMarshalers)
}

// policy is the gqlgen plugin: its GenerateCode hook runs after gqlgen has
// built its model of the schema and before the templates render it.
type policy struct {
	listMarshalers map[string]bool // names of the list marshalers to rewrite
}

func (*policy) Name() string { return "parley-inline" }

func (p *policy) GenerateCode(data *codegen.Data) error {
	objects := map[string]bool{}
	for _, o := range data.Objects {
		if _, ok := inlineObjects[o.Name]; ok {
			o.DisableConcurrency = true
			objects[o.Name] = true
		}
	}
	p.listMarshalers = map[string]bool{}
	lists := map[string]bool{}
	for _, ref := range data.ReferencedTypes {
		if ref.Definition == nil || !ref.IsSlice() {
			continue
		}
		if _, ok := inlineLists[ref.Definition.Name]; ok {
			p.listMarshalers[ref.MarshalFunc()] = true
			lists[ref.Definition.Name] = true
		}
	}
	// A renamed type would otherwise silently lose its policy.
	var missing []string
	for name := range inlineObjects {
		if !objects[name] {
			missing = append(missing, "object "+name)
		}
	}
	for name := range inlineLists {
		if !lists[name] {
			missing = append(missing, "list of "+name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("not in the schema: %v", missing)
	}
	return nil
}

// rewrite edits the generated file: see rewriteLists and dropEmptyDeferred.
func rewrite(filename string, listFuncs map[string]bool) error {
	src, err := os.ReadFile(filename)
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	lists, err := rewriteLists(fset, f, listFuncs)
	if err != nil {
		return err
	}
	edits := append(lists, dropEmptyDeferred(fset, f)...)
	sort.Slice(edits, func(i, j int) bool { return edits[i].from < edits[j].from })
	var out bytes.Buffer
	last := 0
	for _, e := range edits {
		out.Write(src[last:e.from])
		out.WriteString(e.text)
		last = e.to
	}
	out.Write(src[last:])
	formatted, err := format.Source(out.Bytes())
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	if err := os.WriteFile(filename, formatted, 0o644); err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	return nil
}

// edit replaces src[from:to] with text.
type edit struct {
	from, to int
	text     string
}

func span(fset *token.FileSet, n ast.Node, text string) edit {
	return edit{fset.Position(n.Pos()).Offset, fset.Position(n.End()).Offset, text}
}

// isCall reports whether e calls pkg.name.
func isCall(e ast.Expr, pkg, name string) (*ast.CallExpr, bool) {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return nil, false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return nil, false
	}
	x, ok := sel.X.(*ast.Ident)
	return call, ok && x.Name == pkg
}

// rewriteLists makes the named list marshalers call inlineSliceFunc
// instead of graphql.MarshalSliceConcurrently (same parameters).
func rewriteLists(fset *token.FileSet, f *ast.File, funcs map[string]bool) ([]edit, error) {
	var edits []edit
	done := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !funcs[fn.Name.Name] || fn.Body == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if e, ok := n.(ast.Expr); ok {
				if call, ok := isCall(e, "graphql", "MarshalSliceConcurrently"); ok {
					edits = append(edits, span(fset, call.Fun, inlineSliceFunc))
					done[fn.Name.Name] = true
				}
			}
			return true
		})
	}
	for name := range funcs {
		if !done[name] {
			// gqlgen's template changed: the policy would silently not apply.
			return nil, fmt.Errorf("rewrite lists: no graphql.MarshalSliceConcurrently in %s", name)
		}
	}
	return edits, nil
}

// dropEmptyDeferred: every object marshaler starts with
// `deferred := graphql.NewDeferredGroup(ctx)`, which builds the object's
// response path, a field set and a map (allocations per object of every
// response), for the fields of the object that an @defer fragment may
// postpone. Only fields resolved concurrently can be postponed: they are
// handed &deferred. In a marshaler that never takes &deferred (objects
// without such fields, and the inline ones) the group stays empty, so an
// empty literal is the same thing, for free.
func dropEmptyDeferred(fset *token.FileSet, f *ast.File) []edit {
	var edits []edit
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		var group *ast.CallExpr
		shared := false
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				if len(n.Lhs) == 1 && len(n.Rhs) == 1 && isIdent(n.Lhs[0], "deferred") {
					if call, ok := isCall(n.Rhs[0], "graphql", "NewDeferredGroup"); ok {
						group = call
					}
				}
			case *ast.UnaryExpr:
				if n.Op == token.AND && isIdent(n.X, "deferred") {
					shared = true
				}
			}
			return true
		})
		if group != nil && !shared {
			edits = append(edits, span(fset, group, "graphql.DeferredGroup{}"))
		}
	}
	return edits
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
