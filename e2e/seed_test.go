package e2e

import (
	"context"
	"log/slog"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/seed"
)

// The seed writes data exactly as the service would have: sequences, events,
// counters and read markers agree, and the API serves it.
func TestSeedWritesWhatTheServiceWould(t *testing.T) {
	t.Parallel()
	url := apptest.TestDatabaseURL(t)
	ctx := context.Background()
	db, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyMigrations(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	o := seed.Defaults()
	o.Users, o.Conversations, o.Messages = 40, 300, 4000
	o.Logger = slog.New(slog.DiscardHandler)
	res, err := seed.Run(ctx, db, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 40 || res.Conversations != 300 || res.Messages != 4000 || res.Participants < 600 {
		t.Fatalf("seeded %+v", res)
	}
	if _, err := seed.Run(ctx, db, o); err == nil {
		t.Fatal("seeding a database twice must fail")
	}
	one := func(q string) int {
		var n int
		if err := db.SQL.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	for q, want := range map[string]int{
		`SELECT COUNT(*) FROM message_events`: 4000,
		`SELECT COUNT(*) FROM conversations c WHERE c.last_seq <> (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)`:                                              0,
		`SELECT COUNT(*) FROM conversations c WHERE c.message_count <> (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)`:                                         0,
		`SELECT COUNT(*) FROM conversations c WHERE c.last_seq > 0 AND c.last_message_id <> (SELECT m.id FROM messages m WHERE m.conversation_id = c.id AND m.seq = c.last_seq)`: 0,
		`SELECT COUNT(*) FROM participants p JOIN conversations c ON c.id = p.conversation_id WHERE p.last_read_seq > c.last_seq`:                                                0,
		`SELECT COUNT(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = m.conversation_id AND p.user_id = m.sender_id)`:                0,
	} {
		if got := one(q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	db.Close()

	s := apptest.Start(t, "DATABASE_URL="+url)
	r := s.Post("", `mutation { login(username: "user1", password: "password-123") { token } }`, nil)
	var login struct{ Login struct{ Token string } }
	r.Decode(t, &login)
	var out struct {
		Conversations struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					ID          string
					UnreadCount int
					Messages    struct{ TotalCount int }
				}
			}
		}
		MessagingStats struct{ ConversationCount, UnreadMessageCount int }
	}
	s.Post(login.Login.Token, `{ conversations(first: 100) { totalCount edges { node { id unreadCount messages(last: 5) { totalCount } } } }
		messagingStats { conversationCount unreadMessageCount } }`, nil).Decode(t, &out)
	if out.Conversations.TotalCount == 0 || out.Conversations.TotalCount != out.MessagingStats.ConversationCount {
		t.Fatalf("user1 has %d conversations, stats say %d", out.Conversations.TotalCount, out.MessagingStats.ConversationCount)
	}
	unread := 0
	for _, e := range out.Conversations.Edges {
		unread += e.Node.UnreadCount
	}
	if out.Conversations.TotalCount <= 100 && unread != out.MessagingStats.UnreadMessageCount {
		t.Fatalf("unread counts add up to %d, stats say %d", unread, out.MessagingStats.UnreadMessageCount)
	}
}
