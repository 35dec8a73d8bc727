// Package graph is the GraphQL layer: thin resolvers that authenticate the
// viewer, call chat.Service, and load related rows through the response's
// dataloaders.
package graph

import (
	"context"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"strings"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/schema"
	"github.com/parley-chat/parley/graph/model"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/loader"
)

// Resolver holds the dependencies of every resolver.
type Resolver struct {
	Chat *chat.Service
	// presenter maps errors that end a subscription to extensions.code.
	presenter graphql.ErrorPresenterFunc
}

// NewResolver returns the root resolver.
func NewResolver(svc *chat.Service, log *slog.Logger) *Resolver {
	return &Resolver{Chat: svc, presenter: ErrorPresenter(log)}
}

// viewer returns the signed-in user's ID or UNAUTHENTICATED.
func viewer(ctx context.Context) (string, error) {
	id := auth.Viewer(ctx)
	if id == "" {
		return "", &chat.Error{Kind: chat.ErrUnauthenticated, Msg: "sign in first: send Authorization: Bearer <token>"}
	}
	return id, nil
}

func loadUser(ctx context.Context, id string) (*ent.User, error) {
	u, err := loader.For(ctx).User.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if u == nil {
		// A user is never deleted while referenced; absence is a bug.
		return nil, &chat.Error{Kind: chat.ErrNotFound, Msg: "user not found"}
	}
	return u, nil
}

func loadMessage(ctx context.Context, id string) (*ent.Message, error) {
	m, err := loader.For(ctx).Message.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, &chat.Error{Kind: chat.ErrNotFound, Msg: "message not found"}
	}
	return m, nil
}

func loadConversation(ctx context.Context, id string) (*ent.Conversation, error) {
	c, err := loader.For(ctx).Conversation.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &chat.Error{Kind: chat.ErrNotFound, Msg: "conversation not found"}
	}
	return c, nil
}

// warmConversation enqueues, all at once, the loads that the selected fields
// of one conversation (c, which may be nil) will make. Conversation's fields
// run one after the other (internal/gqlgen), so without this each would wait
// out a batch window of its own; with it they share one, as they did when
// they ran concurrently. Shared loaders (a subscription event's) still
// collect the same keys from every subscriber. Lists prefetch instead
// (Conversations).
func warmConversation(ctx context.Context, c *ent.Conversation) {
	if c == nil {
		return
	}
	l := loader.For(ctx)
	l.Conversation.Prime(ctx, c.ID, c) // for lastMessage.conversation
	// The thunks are dropped: the fields load the same keys again and get
	// the pending results.
	if selects(ctx, "participants") || selects(ctx, "readReceipts") {
		l.Participants.Load(ctx, c.ID)
	}
	if c.LastMessageID != nil && selects(ctx, "lastMessage") {
		l.Message.Load(ctx, *c.LastMessageID)
	}
	if v := auth.Viewer(ctx); v != "" && selects(ctx, "unreadCount") {
		l.Unread.Load(ctx, loader.UnreadKey(v, c.ID))
	}
}

// warmMessage is warmConversation for one message (m may be nil): its
// sender, attachments and conversation. A last message needs none of it:
// its sender comes with it, its conversation is primed, and the list
// prefetches attachments; a page's messages are prefetched.
func warmMessage(ctx context.Context, m *ent.Message) {
	if m == nil {
		return
	}
	l := loader.For(ctx)
	if selects(ctx, "sender") {
		l.User.Load(ctx, m.SenderID)
	}
	if m.DeletedAt == nil && selects(ctx, "attachments") {
		l.Attachments.Load(ctx, m.ID)
	}
	if selects(ctx, "conversation") {
		l.Conversation.Load(ctx, m.ConversationID)
	}
}

// node resolves any ID by its type prefix; anything the viewer may not see
// is null, exactly like an ID that does not exist.
func (r *Resolver) node(ctx context.Context, viewerID, id string) (model.Node, error) {
	var (
		n   model.Node
		err error
	)
	switch {
	case strings.HasPrefix(id, schema.PrefixUser):
		var u *ent.User
		if u, err = loader.For(ctx).User.Load(ctx, id)(); u != nil {
			n = u
		}
	case strings.HasPrefix(id, schema.PrefixConversation):
		var c *ent.Conversation
		if c, err = r.Chat.Conversation(ctx, viewerID, id); c != nil {
			warmConversation(ctx, c)
			n = c
		}
	case strings.HasPrefix(id, schema.PrefixMessage):
		var m *ent.Message
		if m, err = r.Chat.Message(ctx, viewerID, id); m != nil {
			warmMessage(ctx, m)
			n = m
		}
	case strings.HasPrefix(id, schema.PrefixAttachment):
		n, err = r.Chat.Attachment(ctx, viewerID, id)
	}
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}
