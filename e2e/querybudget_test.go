package e2e

import (
	"fmt"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

// The statement budgets of the no-N+1 issue: statements are counted at the
// driver, as the database logs them, and must not grow with the page size.
const (
	conversationListBudget = 5
	messagePageBudget      = 4
)

const conversationListQ = `query($n: Int) { conversations(first: $n) { totalCount pageInfo { hasNextPage endCursor }
	edges { cursor node { id kind title updatedAt
		participants { id username displayName avatarUrl }
		lastMessage { id body createdAt sender { id username displayName } }
		unreadCount
		readReceipts { lastReadMessageId readAt user { id username } } } } } }`

const messagePageQ = `query($c: ID!, $n: Int) { conversation(id: $c) { id messages(first: $n) { totalCount
	pageInfo { hasNextPage endCursor }
	edges { cursor node { id body createdAt editedAt deletedAt clientMessageId
		sender { id username displayName avatarUrl }
		attachments { id filename contentType size url } } } } } }`

// conversationListNestedBudget: the page, last messages, their
// attachments, participants and unread counts (no totalCount).
const conversationListNestedBudget = 5

const conversationListNestedQ = `query($n: Int) { conversations(first: $n) { edges { node { id
	lastMessage { id attachments { id url } sender { id }
		conversation { id title unreadCount participants { id } readReceipts { user { id } } } } } } } }`

// singleConversationBudget: the conversation, its participants, its last
// message and its unread count.
const singleConversationBudget = 4

const singleConversationQ = `query($c: ID!) { conversation(id: $c) { id unreadCount
	participants { id } readReceipts { user { id } }
	lastMessage { id sender { id } conversation { id } } } }`

// statements runs query and returns how many SQL statements it cost.
func statements(t *testing.T, s *apptest.Server, token, query string, vars map[string]any) int64 {
	t.Helper()
	before := s.App.DB.Statements.Load()
	r := s.Post(token, query, vars)
	after := s.App.DB.Statements.Load()
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors)
	}
	return after - before
}

func TestQueryBudgets(t *testing.T) {
	t.Parallel()
	// The budgets are what executing a query costs: a cached answer costs
	// nothing (TestResponseCacheHitCostsNoStatement).
	s := apptest.Start(t, "RESYNC_INTERVAL=1h", "RESPONSE_CACHE=off")
	owner := s.RegisterFor(t, "owner")
	others := make([]apptest.User, 6)
	for i := range others {
		others[i] = s.RegisterFor(t, fmt.Sprintf("peer%d", i))
	}
	// 110 conversations: DIRECT and GROUP, each with messages from both
	// sides (some with attachments), read markers, and a member who left.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var bigConv string
	for i := range 110 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			peer := others[i%len(others)]
			var conv string
			if i%3 == 0 {
				title := fmt.Sprintf("group %d", i)
				conv = s.CreateConversation(owner, &title, peer, others[(i+1)%6], others[(i+2)%6])
			} else if i < len(others) {
				conv = s.CreateConversation(owner, nil, peer)
			} else {
				title := fmt.Sprintf("pair %d", i)
				conv = s.CreateConversation(owner, &title, peer)
			}
			if i == 0 {
				bigConv = conv
			}
			s.Send(peer, conv, "hello")
			s.Send(owner, conv, "hi")
			subMutate(t, s, peer, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": conv})
			s.Send(peer, conv, "unread")
		}()
	}
	wg.Wait()
	// One conversation with 120 messages, some with attachments.
	for i := range 120 {
		sender := owner
		if i%2 == 1 {
			sender = others[1]
		}
		if i%10 == 0 {
			att := htUploadOK(t, s, sender, bigConv, htFile{Name: "f.txt", ContentType: "text/plain", Data: []byte("x")}).ID
			subMutate(t, s, sender, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
				map[string]any{"in": map[string]any{"conversationId": bigConv, "body": fmt.Sprintf("m%d", i), "attachmentIds": []string{att}}})
			continue
		}
		s.Send(sender, bigConv, fmt.Sprintf("m%d", i))
	}
	// A sender who has left: their messages still resolve.
	subMutate(t, s, others[1], `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": bigConv})

	for _, n := range []int{20, 100} {
		statements(t, s, owner.Token, conversationListQ, map[string]any{"n": n}) // warm
		got := statements(t, s, owner.Token, conversationListQ, map[string]any{"n": n})
		t.Logf("conversations(first: %d), full selection: %d statements", n, got)
		if got > conversationListBudget {
			t.Errorf("conversations(first: %d) cost %d statements, budget %d", n, got, conversationListBudget)
		}
	}
	// The page's edges are marshaled one after the other when the resolver
	// prefetched everything they read (internal/gqlgen): nested selections
	// that reach the same kinds cost no statement per element.
	for _, n := range []int{20, 100} {
		got := statements(t, s, owner.Token, conversationListNestedQ, map[string]any{"n": n})
		t.Logf("conversations(first: %d), last messages' attachments and conversation: %d statements", n, got)
		if got > conversationListNestedBudget {
			t.Errorf("conversations(first: %d) with nested selections cost %d statements, budget %d", n, got, conversationListNestedBudget)
		}
	}
	// One conversation: its fields run one after the other, and what they
	// load is one batch each.
	if got := statements(t, s, owner.Token, singleConversationQ, map[string]any{"c": bigConv}); got > singleConversationBudget {
		t.Errorf("conversation(id) cost %d statements, budget %d", got, singleConversationBudget)
	}
	for _, n := range []int{50, 100} {
		statements(t, s, owner.Token, messagePageQ, map[string]any{"c": bigConv, "n": n})
		got := statements(t, s, owner.Token, messagePageQ, map[string]any{"c": bigConv, "n": n})
		t.Logf("conversation(id){messages(first: %d)}: %d statements", n, got)
		if got > messagePageBudget {
			t.Errorf("messages(first: %d) cost %d statements, budget %d", n, got, messagePageBudget)
		}
	}
}

// One new message delivered to N messageEvents subscribers costs the same
// statements for N = 1 and N = 25: the event's rows are read once and
// shared, not once per subscriber.
func TestEventStatementsDoNotGrowWithSubscribers(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RESYNC_INTERVAL=1h")
	alice, bob := s.RegisterFor(t, "alice"), s.RegisterFor(t, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(alice, conv, "m0")
	const q = `subscription($c: ID!, $after: String) { messageEvents(conversationId: $c, after: $after) {
		type cursor message { id body createdAt sender { id username displayName }
		attachments { id url } conversation { id title } } } }`
	var clients []*apptest.Client
	sentSoFar := []string{"m0"}
	cost := func(n int, body string) int64 {
		for len(clients) < n {
			c := s.ConnectAs(bob)
			c.Subscribe("1", q, map[string]any{"c": conv, "after": fromStart(conv)})
			for _, want := range sentSoFar {
				if got := subNextMsg(t, c, "1"); got.Message.Body != want {
					t.Fatalf("replay: %q, want %q", got.Message.Body, want)
				}
			}
			clients = append(clients, c)
		}
		before := s.App.DB.Statements.Load()
		s.Send(alice, conv, body)
		for _, c := range clients {
			if got := subNextMsg(t, c, "1"); got.Message.Body != body {
				t.Fatalf("got %q, want %q", got.Message.Body, body)
			}
		}
		sentSoFar = append(sentSoFar, body)
		return s.App.DB.Statements.Load() - before
	}
	one := cost(1, "to one")
	many := cost(25, "to many")
	t.Logf("statements for one sendMessage and its delivery: %d with 1 subscriber, %d with 25", one, many)
	if many != one {
		t.Fatalf("delivering to 25 subscribers cost %d statements, to 1 cost %d", many, one)
	}
}
