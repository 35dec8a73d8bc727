package graph

// Complexity prices paginated fields by the page they ask for, so nested
// pages multiply: conversations(first: 100) { messages(first: 100) } costs
// ten thousand times its innermost selection, not two fields.
func Complexity(defaultPage int) ComplexityRoot {
	page := func(first, last *int) int {
		n := defaultPage
		if first != nil {
			n = *first
		}
		if last != nil {
			n = *last
		}
		return max(n, 1)
	}
	var c ComplexityRoot
	c.Conversation.Messages = func(child int, first *int, _ *string, last *int, _ *string) int {
		return 1 + child*page(first, last)
	}
	c.Query.Conversations = func(child int, first *int, _ *string) int {
		return 1 + child*page(first, nil)
	}
	c.Query.Users = func(child int, _ *string, first *int) int {
		return 1 + child*page(first, nil)
	}
	return c
}
