package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// selects reports whether the current field's selection reaches path
// (through fragments too), so a list resolver can fetch, in one statement
// each, what every element will ask for, instead of leaving it to
// time-window batching.
func selects(ctx context.Context, path ...string) bool {
	fc := graphql.GetFieldContext(ctx)
	oc := graphql.GetOperationContext(ctx)
	if fc == nil || oc == nil {
		return false
	}
	return reaches(oc, fc.Field.Selections, path)
}

func reaches(oc *graphql.OperationContext, set ast.SelectionSet, path []string) bool {
	if len(path) == 0 {
		return true
	}
	for _, f := range graphql.CollectFields(oc, set, nil) {
		if f.Name == path[0] && reaches(oc, f.Selections, path[1:]) {
			return true
		}
	}
	return false
}
