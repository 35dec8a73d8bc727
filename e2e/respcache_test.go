package e2e

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

// What the response cache must never serve: a list a change has made
// stale. Every kind of change a viewer can see is made once, and the
// viewer's cached list (and message page) must show it at once.

const cacheListQ = `query { conversations(first: 20) { totalCount edges { node { id title unreadCount
	participants { id }
	lastMessage { id body editedAt deletedAt sender { id } }
	readReceipts { user { id } lastReadMessageId } } } } }`

const cachePageQ = `query($c: ID!) { conversation(id: $c) { id messages(last: 20) { totalCount edges { node { id body deletedAt } } } } }`

type cachedConv struct {
	ID           string
	Title        *string
	UnreadCount  int
	Participants []struct{ ID string }
	LastMessage  *struct {
		ID, Body            string
		EditedAt, DeletedAt *string
		Sender              struct{ ID string }
	}
	ReadReceipts []struct {
		User              struct{ ID string }
		LastReadMessageID *string
	}
}

func (c cachedConv) members() []string {
	var ids []string
	for _, p := range c.Participants {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// cacheList lists u's conversations twice and checks that the second answer
// came from the cache and equals the first, so that what the caller checks
// next is the cache's invalidation and not a fresh execution.
func cacheList(t *testing.T, s *apptest.Server, u apptest.User) (total int, byID map[string]cachedConv) {
	t.Helper()
	first := s.Post(u.Token, cacheListQ, nil)
	hits := obsValue(obsScrape(t, s), "parley_response_cache_total", "result", "hit")
	second := s.Post(u.Token, cacheListQ, nil)
	if got := obsValue(obsScrape(t, s), "parley_response_cache_total", "result", "hit"); got != hits+1 {
		t.Fatalf("listing again: cache hits %v → %v, want one more", hits, got)
	}
	if string(first.Data) != string(second.Data) {
		t.Fatalf("cached answer differs:\n%s\n%s", first.Data, second.Data)
	}
	var out struct {
		Conversations struct {
			TotalCount int
			Edges      []struct{ Node cachedConv }
		}
	}
	second.Decode(t, &out)
	byID = map[string]cachedConv{}
	for _, e := range out.Conversations.Edges {
		byID[e.Node.ID] = e.Node
	}
	return out.Conversations.TotalCount, byID
}

func TestResponseCacheShowsEveryChange(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RESPONSE_CACHE=on")
	alice, bob, carol, dave := s.Register("rc_alice"), s.Register("rc_bob"), s.Register("rc_carol"), s.Register("rc_dave")
	group := s.CreateConversation(alice, apptest.Ptr("cache"), bob)

	// A message from bob: alice's list shows it, unread.
	cacheList(t, s, alice)
	msg := s.Send(bob, group, "first")
	_, convs := cacheList(t, s, alice)
	if c := convs[group]; c.LastMessage == nil || c.LastMessage.Body != "first" || c.UnreadCount != 1 {
		t.Fatalf("after bob's message: %+v", c)
	}

	// Alice reads it: her unread count and bob's view of her receipt.
	cacheList(t, s, bob) // cached before the change, like every list below
	if r := s.Post(alice.Token, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": group}); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	_, convs = cacheList(t, s, alice)
	if c := convs[group]; c.UnreadCount != 0 {
		t.Fatalf("after reading: unreadCount %d", c.UnreadCount)
	}
	_, bobs := cacheList(t, s, bob)
	read := false
	for _, r := range bobs[group].ReadReceipts {
		read = read || r.User.ID == alice.ID && r.LastReadMessageID != nil && *r.LastReadMessageID == msg
	}
	if !read {
		t.Fatalf("bob's list misses alice's receipt: %+v", bobs[group].ReadReceipts)
	}

	// Edited, then deleted, by bob: alice's list and message page follow.
	page := func() string {
		r := s.Post(alice.Token, cachePageQ, map[string]any{"c": group})
		if len(r.Errors) > 0 {
			t.Fatal(r.Errors)
		}
		return string(r.Data)
	}
	before := page()
	if again := page(); again != before {
		t.Fatalf("message page changed with nothing written:\n%s\n%s", before, again)
	}
	if r := s.Post(bob.Token, `mutation($id: ID!) { editMessage(id: $id, body: "edited") { id } }`, map[string]any{"id": msg}); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	_, convs = cacheList(t, s, alice)
	if c := convs[group]; c.LastMessage == nil || c.LastMessage.Body != "edited" || c.LastMessage.EditedAt == nil {
		t.Fatalf("after the edit: %+v", c.LastMessage)
	}
	if after := page(); after == before {
		t.Fatal("message page unchanged after the edit")
	}
	if r := s.Post(bob.Token, `mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": msg}); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	_, convs = cacheList(t, s, alice)
	if c := convs[group]; c.LastMessage == nil || c.LastMessage.DeletedAt == nil {
		t.Fatalf("after the delete: %+v", c.LastMessage)
	}

	// New conversations others start with alice: a group, then a direct one.
	total, _ := cacheList(t, s, alice)
	byCarol := s.CreateConversation(carol, apptest.Ptr("carol's"), alice)
	direct := s.CreateConversation(dave, nil, alice)
	n, convs := cacheList(t, s, alice)
	if _, ok := convs[byCarol]; !ok || n != total+2 {
		t.Fatalf("after carol's group: total %d → %d, has it: %v", total, n, ok)
	}
	if _, ok := convs[direct]; !ok {
		t.Fatal("dave's direct conversation missing from alice's list")
	}

	// Dave, cached with no group, is added; then bob leaves.
	_, daves := cacheList(t, s, dave)
	if _, ok := daves[group]; ok {
		t.Fatal("dave listed the group before being added")
	}
	if r := s.Post(alice.Token, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
		map[string]any{"c": group, "u": []string{dave.ID}}); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	_, daves = cacheList(t, s, dave)
	want := []string{alice.ID, bob.ID, dave.ID}
	slices.Sort(want)
	if got := daves[group].members(); !slices.Equal(got, want) {
		t.Fatalf("dave's view of the group: %v, want %v", got, want)
	}
	cacheList(t, s, bob)
	if r := s.Post(bob.Token, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": group}); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	if _, bobs = cacheList(t, s, bob); bobs[group].ID != "" {
		t.Fatal("bob still lists the group he left")
	}
	_, convs = cacheList(t, s, alice)
	want = []string{alice.ID, dave.ID}
	slices.Sort(want)
	if got := convs[group].members(); !slices.Equal(got, want) {
		t.Fatalf("alice's view after bob left: %v, want %v", got, want)
	}
}

// Two viewers with the same document get their own answers, and so do
// different variables; errors are not kept.
func TestResponseCacheKeepsViewersAndVariablesApart(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RESPONSE_CACHE=on")
	alice, bob := s.Register("rcv_alice"), s.Register("rcv_bob")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(alice, conv, "to bob")
	unread := func(u apptest.User) int {
		var out struct {
			Conversation struct{ UnreadCount int }
		}
		s.Post(u.Token, `query($c: ID!) { conversation(id: $c) { unreadCount } }`, map[string]any{"c": conv}).Decode(t, &out)
		return out.Conversation.UnreadCount
	}
	for range 2 {
		if a, b := unread(alice), unread(bob); a != 0 || b != 1 {
			t.Fatalf("unread: alice %d, bob %d; want 0 and 1", a, b)
		}
	}
	first := func(n int) int {
		var out struct {
			Conversations struct{ Edges []json.RawMessage }
		}
		s.Post(alice.Token, `query($n: Int) { conversations(first: $n) { edges { cursor } } }`, map[string]any{"n": n}).Decode(t, &out)
		return len(out.Conversations.Edges)
	}
	s.CreateConversation(alice, apptest.Ptr("second"), bob)
	for range 2 {
		if a, b := first(1), first(2); a != 1 || b != 2 {
			t.Fatalf("first 1: %d edges, first 2: %d", a, b)
		}
	}
	// An error (a page too big) is answered afresh each time.
	stored := obsValue(obsScrape(t, s), "parley_response_cache_total", "result", "stored")
	for range 2 {
		if r := s.Post(alice.Token, `query { conversations(first: 100000) { edges { cursor } } }`, nil); len(r.Errors) == 0 {
			t.Fatal("a page of 100,000 was answered")
		}
	}
	if got := obsValue(obsScrape(t, s), "parley_response_cache_total", "result", "stored"); got != stored {
		t.Fatalf("an error answer was stored (%v → %v)", stored, got)
	}
}

// Lists read while messages are sent never show an older state than the
// last message sent before the read began.
func TestResponseCacheUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RESPONSE_CACHE=on", "RATE_LIMIT_MUTATIONS=off")
	alice, bob := s.Register("rcw_alice"), s.Register("rcw_bob")
	conv := s.CreateConversation(alice, apptest.Ptr("busy"), bob)
	var mu sync.Mutex
	sent := 0 // messages whose sendMessage has returned
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 40; i++ {
			s.Send(bob, conv, "n")
			mu.Lock()
			sent = i
			mu.Unlock()
		}
	}()
	reads := 0
	for finished := false; !finished; reads++ {
		select {
		case <-done:
			finished = true
		default:
		}
		mu.Lock()
		floor := sent
		mu.Unlock()
		var out struct {
			Conversations struct {
				Edges []struct{ Node struct{ UnreadCount int } }
			}
		}
		s.Post(alice.Token, `query { conversations(first: 5) { edges { node { unreadCount } } } }`, nil).Decode(t, &out)
		if len(out.Conversations.Edges) != 1 {
			t.Fatalf("%d conversations listed", len(out.Conversations.Edges))
		}
		if got := out.Conversations.Edges[0].Node.UnreadCount; got < floor {
			t.Fatalf("read %d: unreadCount %d after %d messages were sent", reads, got, floor)
		}
	}
	t.Logf("%d reads during 40 sends", reads)
}

// A cached answer costs no SQL statement; the answer that fills the cache
// costs the execution's statements and one more, for the viewer's
// memberships (what the cache drops the answer on).
func TestResponseCacheHitCostsNoStatement(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RESPONSE_CACHE=on", "RESYNC_INTERVAL=1h")
	alice, bob := s.Register("rcs_alice"), s.Register("rcs_bob")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(bob, conv, "hello")
	if n := statements(t, s, alice.Token, conversationListQ, map[string]any{"n": 20}); n > conversationListBudget+1 {
		t.Fatalf("filling the cache cost %d statements, budget %d + 1", n, conversationListBudget)
	}
	if n := statements(t, s, alice.Token, conversationListQ, map[string]any{"n": 20}); n != 0 {
		t.Fatalf("a cached list cost %d statements", n)
	}
}
