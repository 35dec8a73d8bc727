package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/parley-chat/parley/internal/chat"
)

// Document-level limits answer GRAPHQL_VALIDATION_FAILED with one of these
// reasons in extensions.reason (DEPTH_LIMIT_EXCEEDED is depth.go's,
// COMPLEXITY_LIMIT_EXCEEDED gqlgen's, TOKEN_LIMIT_EXCEEDED the parser's).
const (
	ReasonAliasLimit           = "ALIAS_LIMIT_EXCEEDED"
	ReasonFieldLimit           = "FIELD_LIMIT_EXCEEDED"
	ReasonIntrospectionOff     = "INTROSPECTION_DISABLED"
	maxCachedQueryBytes        = 64 << 10
	batchingNotSupportedErrMsg = "batched operations (a JSON array body) are not supported: send one operation per request"
)

// useOperationLimits installs the document limits of GraphQLOptions that
// gqlgen lacks, and the parsed-document cache they consult: the parser's
// token cap (MAX_TOKENS), a field cap checked before validation
// (MAX_FIELDS), a cap on validation errors, the alias cap (MAX_ALIASES),
// the introspection switch (it takes the place of extension.Introspection),
// the refusal of subscriptions over one-shot transports, and the check
// that a mutation's or subscription's viewer still exists (viewer.go).
// Register it after the persisted-query extension, which fills in the
// query that the field cap parses.
func useOperationLimits(srv *handler.Server, svc *chat.Service, opt GraphQLOptions) {
	cache := newQueryCache()
	srv.SetQueryCache(cache)
	if opt.MaxTokens > 0 {
		srv.SetParserTokenLimit(opt.MaxTokens)
	}
	srv.SetValidationRulesFn(cappedValidationRules)
	if opt.MaxFields > 0 {
		srv.Use(fieldLimit{max: opt.MaxFields, maxTokens: opt.MaxTokens, parsed: cache})
	}
	// "Did you mean …?" suggestions describe the schema as well as
	// introspection does.
	srv.SetDisableSuggestion(opt.DisableIntrospection)
	srv.Use(introspectionSwitch{enabled: !opt.DisableIntrospection})
	if opt.MaxAliases > 0 {
		srv.Use(aliasLimit{max: opt.MaxAliases})
	}
	srv.Use(subscriptionsStream{})
	srv.Use(liveViewer{svc: svc})
}

// maxValidationErrors: a document may break a rule thousands of times (two
// fields of one name with different arguments, repeated, conflict pairwise);
// past this many the rest are not even formatted.
const maxValidationErrors = 50

// cappedValidationRules are gqlparser's rules sharing one error budget per
// validated document.
func cappedValidationRules() *rules.Rules {
	n := 0
	out := rules.NewRules()
	for name, fn := range rules.NewDefaultRules().GetInner() {
		out.AddRule(name, func(obs *core.Events, addError core.AddErrFunc) {
			fn(obs, func(opts ...core.ErrorOption) {
				switch n++; {
				case n <= maxValidationErrors:
					addError(opts...)
				case n == maxValidationErrors+1:
					addError(core.Message("too many validation errors: only the first %d are listed", maxValidationErrors))
				}
			})
		})
	}
	return out
}

// fieldLimit caps how many fields a document expands to, fragments counted
// at every spread, before it is validated: validation compares same-named
// fields pairwise, and the depth and complexity limits walk the expanded
// document, so a 1 KB document of fragments that each spread the previous
// one twice would otherwise cost minutes of CPU. Every operation and every
// fragment definition counts (all of them are validated). A document in the
// parsed-document cache passed already; one that does not parse is left to
// the executor to report.
type fieldLimit struct {
	max, maxTokens int
	parsed         graphql.Cache[*ast.QueryDocument]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = fieldLimit{}

func (fieldLimit) ExtensionName() string                   { return "FieldLimit" }
func (fieldLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (f fieldLimit) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	if raw.Query == "" {
		return nil
	}
	if _, ok := f.parsed.Get(ctx, raw.Query); ok {
		return nil
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: raw.Query}, f.maxTokens)
	if err != nil {
		return nil
	}
	c := newSelectionCounter(doc.Fragments, f.max+1)
	total := 0
	for _, op := range doc.Operations {
		total = min(total+c.count(op.SelectionSet).fields, f.max+1)
	}
	for _, fr := range doc.Fragments {
		total = min(total+c.spread(fr.Name).fields, f.max+1)
	}
	if total > f.max {
		return validationError(ReasonFieldLimit, "document expands to more than %d fields, the limit (fragments count at every spread)", f.max)
	}
	return nil
}

// newQueryCache is the parsed-document cache. Documents are keyed by their
// text: huge ones (valid ones carrying a long string literal, say) are
// parsed again rather than kept, so 1000 entries cannot grow to gigabytes.
func newQueryCache() graphql.Cache[*ast.QueryDocument] {
	return sizeCapped[*ast.QueryDocument]{lru.New[*ast.QueryDocument](1000)}
}

type sizeCapped[T any] struct{ graphql.Cache[T] }

func (c sizeCapped[T]) Add(ctx context.Context, key string, v T) {
	if len(key) <= maxCachedQueryBytes {
		c.Cache.Add(ctx, key, v)
	}
}

// isBatch reports whether a JSON body is an array: a batch of operations,
// which this server does not run (the batch cap is 1).
func isBatch(body []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("["))
}

func validationError(reason, format string, args ...any) *gqlerror.Error {
	err := gqlerror.Errorf(format, args...)
	err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED", "reason": reason}
	return err
}

// subscriptionsStream refuses a subscription sent over a transport that
// answers once (a plain JSON or multipart POST): gqlgen would hold the
// request open until the first event and then answer with it alone.
type subscriptionsStream struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = subscriptionsStream{}

func (subscriptionsStream) ExtensionName() string                   { return "SubscriptionsStream" }
func (subscriptionsStream) Validate(graphql.ExecutableSchema) error { return nil }
func (subscriptionsStream) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation.Operation != ast.Subscription || oc.Headers == nil || streaming(oc.Headers) {
		return nil
	}
	err := gqlerror.Errorf("subscriptions need a stream: a WebSocket (graphql-transport-ws or graphql-ws) " +
		"or Server-Sent Events (POST with Accept: text/event-stream and a JSON body)")
	err.Extensions = map[string]any{"code": "BAD_USER_INPUT"}
	return err
}

// streaming mirrors what picks the WebSocket and SSE transports.
func streaming(h http.Header) bool {
	if h.Get("Upgrade") != "" {
		return true
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return strings.Contains(h.Get("Accept"), "text/event-stream") && mt == "application/json"
}

// introspectionSwitch turns gqlgen's introspection on or off. Off, an
// operation selecting __schema or __type is refused before it runs
// (gqlgen's own switch would fail the field at run time, as an internal
// error); __typename stays available.
type introspectionSwitch struct{ enabled bool }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = introspectionSwitch{}

func (introspectionSwitch) ExtensionName() string                   { return "IntrospectionSwitch" }
func (introspectionSwitch) Validate(graphql.ExecutableSchema) error { return nil }
func (s introspectionSwitch) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	oc.DisableIntrospection = !s.enabled
	if !s.enabled && selectsIntrospection(oc.Operation.SelectionSet, map[string]bool{}) {
		return validationError(ReasonIntrospectionOff, "introspection (__schema, __type) is disabled on this server")
	}
	return nil
}

// selectsIntrospection looks for __schema and __type among the root fields,
// through fragments (validation allows them only there).
func selectsIntrospection(set ast.SelectionSet, seen map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if selectsIntrospection(s.SelectionSet, seen) {
				return true
			}
		case *ast.FragmentSpread:
			if s.Definition != nil && !seen[s.Name] {
				seen[s.Name] = true
				if selectsIntrospection(s.Definition.SelectionSet, seen) {
					return true
				}
			}
		}
	}
	return false
}

// aliasLimit caps the aliased fields of an operation (a field whose alias
// differs from its name), so one request cannot ask for the same expensive
// field many times over. Fragments count at every spread of them.
type aliasLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = aliasLimit{}

func (aliasLimit) ExtensionName() string                   { return "AliasLimit" }
func (aliasLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (a aliasLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	c := newSelectionCounter(oc.Doc.Fragments, a.max+1)
	if n := c.count(oc.Operation.SelectionSet).aliases; n > a.max {
		return validationError(ReasonAliasLimit, "operation uses more than %d aliases, the limit", a.max)
	}
	return nil
}

// counts are the fields and aliased fields a selection expands to.
type counts struct{ fields, aliases int }

// selectionCounter counts selections with fragments expanded, each
// fragment's counts computed once (memoised) and every sum saturating at
// cap, so nested spreads neither take exponential time nor overflow.
// Fragments are found by name: it works on unvalidated documents, where
// spreads are not resolved yet, and an unknown fragment or a cycle counts 0.
type selectionCounter struct {
	cap       int
	defs      map[string]*ast.FragmentDefinition
	fragments map[string]*counts // nil while being counted
}

func newSelectionCounter(defs ast.FragmentDefinitionList, limit int) *selectionCounter {
	c := &selectionCounter{cap: limit, defs: make(map[string]*ast.FragmentDefinition, len(defs)), fragments: map[string]*counts{}}
	for _, d := range defs {
		if _, dup := c.defs[d.Name]; !dup {
			c.defs[d.Name] = d
		}
	}
	return c
}

func (c *selectionCounter) add(a, b counts) counts {
	return counts{fields: min(a.fields+b.fields, c.cap), aliases: min(a.aliases+b.aliases, c.cap)}
}

func (c *selectionCounter) spread(name string) counts {
	if got, seen := c.fragments[name]; seen {
		if got == nil {
			return counts{} // a cycle: invalid, and reported by validation
		}
		return *got
	}
	def := c.defs[name]
	if def == nil {
		return counts{}
	}
	c.fragments[name] = nil
	n := c.count(def.SelectionSet)
	c.fragments[name] = &n
	return n
}

func (c *selectionCounter) count(set ast.SelectionSet) counts {
	var n counts
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			one := counts{fields: 1}
			if s.Alias != "" && s.Alias != s.Name {
				one.aliases = 1
			}
			n = c.add(n, c.add(one, c.count(s.SelectionSet)))
		case *ast.InlineFragment:
			n = c.add(n, c.count(s.SelectionSet))
		case *ast.FragmentSpread:
			n = c.add(n, c.spread(s.Name))
		default:
			panic(fmt.Sprintf("unknown selection %T", sel))
		}
		if n.fields >= c.cap && n.aliases >= c.cap {
			break
		}
	}
	return n
}
