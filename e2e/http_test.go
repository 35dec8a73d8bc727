package e2e

// End-to-end tests of the HTTP surface: authentication, conversations,
// messages, read markers, pagination, node, GET and persisted queries, bad
// requests and the operational endpoints. Every test starts its own replica
// and runs in parallel with the others.
//
// Helpers of this file (and of access_test.go, attachments_test.go) are
// prefixed with "ht" so they cannot clash with other test files of the
// package.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/auth"
)

// ---------------------------------------------------------------------------
// helpers

const htPassword = "password-123"

var htSeq atomic.Int64

// htUser creates a user straight in the database (bcrypt at its minimum
// cost, password htPassword) and signs a token for it with the replica's
// own secret, as login does. A default-cost register costs ~0.6 s under
// -race; register and login themselves are covered by TestAuthRegisterLogin.
// Safe for concurrent use (unlike apptest.Server.Register).
func htUser(t testing.TB, s *apptest.Server, prefix string) apptest.User {
	t.Helper()
	name := fmt.Sprintf("%s_%d", prefix, htSeq.Add(1))
	hash, err := bcrypt.GenerateFromPassword([]byte(htPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.App.DB.Client.User.Create().SetUsername(name).SetDisplayName(name).
		SetPasswordHash(string(hash)).Save(context.Background())
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	tok, err := auth.NewTokens(s.App.Config.JWTSecret, s.App.Config.TokenTTL).Issue(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return apptest.User{ID: u.ID, Username: name, Token: tok}
}

// htResp is a GraphQL response with the raw body and headers kept.
type htResp struct {
	apptest.Response
	Raw    []byte
	Header http.Header
}

// htDo sends req and parses a GraphQL JSON response; it never calls t, so
// goroutines may use it.
func htDo(req *http.Request, token string) (*htResp, error) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := &htResp{Raw: raw, Header: resp.Header}
	if err := json.Unmarshal(raw, &out.Response); err != nil {
		return nil, fmt.Errorf("%s %s: status %d, body not JSON: %q", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	out.Status = resp.StatusCode
	return out, nil
}

func htDoT(t testing.TB, req *http.Request, token string) *htResp {
	t.Helper()
	r, err := htDo(req, token)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func htPostE(s *apptest.Server, token, query string, vars map[string]any) (*htResp, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return htDo(req, token)
}

// htPost sends a GraphQL operation as a JSON POST.
func htPost(t testing.TB, s *apptest.Server, token, query string, vars map[string]any) *htResp {
	t.Helper()
	r, err := htPostE(s, token, query, vars)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// htPostBody sends any body to /graphql.
func htPostBody(t testing.TB, s *apptest.Server, token, contentType string, body []byte) *htResp {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return htDoT(t, req, token)
}

// htGet sends GET /graphql with query-string parameters.
func htGet(t testing.TB, s *apptest.Server, token string, params url.Values) *htResp {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?"+params.Encode(), nil)
	return htDoT(t, req, token)
}

// htFetch GETs any path and returns the raw response.
func htFetch(t testing.TB, s *apptest.Server, token, path string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// htErr asserts that r failed with extensions.code == code on its first
// error, and that no data came back for the failed field.
func htErr(t testing.TB, r *htResp, code string) {
	t.Helper()
	if len(r.Errors) == 0 {
		t.Fatalf("want error %s, got none: %s", code, r.Raw)
	}
	if got := r.Errors[0].Code(); got != code {
		t.Fatalf("want error code %s, got %s: %s", code, got, r.Raw)
	}
	if r.Errors[0].Message == "" {
		t.Fatalf("error without a message: %s", r.Raw)
	}
}

// htOK decodes data into v (if not nil), failing on errors.
func htOK(t testing.TB, r *htResp, v any) {
	t.Helper()
	if len(r.Errors) > 0 || r.Status != http.StatusOK {
		t.Fatalf("unexpected errors (status %d): %s", r.Status, r.Raw)
	}
	if v != nil {
		if err := json.Unmarshal(r.Data, v); err != nil {
			t.Fatalf("decode %s: %v", r.Data, err)
		}
	}
}

func htCreateConv(t testing.TB, s *apptest.Server, owner apptest.User, title *string, others ...apptest.User) string {
	t.Helper()
	ids := []string{}
	for _, o := range others {
		ids = append(ids, o.ID)
	}
	r := htPost(t, s, owner.Token, `mutation($in: CreateConversationInput!) { createConversation(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"participantIds": ids, "title": title}})
	var out struct{ CreateConversation struct{ ID string } }
	htOK(t, r, &out)
	if out.CreateConversation.ID == "" {
		t.Fatalf("createConversation returned no id: %s", r.Raw)
	}
	return out.CreateConversation.ID
}

const htSendMutation = `mutation($in: SendMessageInput!) { sendMessage(input: $in) { ` + htMessageFields + ` } }`

func htSendInput(conv, body string) map[string]any {
	return map[string]any{"in": map[string]any{"conversationId": conv, "body": body}}
}

func htSend(t testing.TB, s *apptest.Server, u apptest.User, conv, body string) htMessage {
	t.Helper()
	var out struct{ SendMessage htMessage }
	htOK(t, htPost(t, s, u.Token, htSendMutation, htSendInput(conv, body)), &out)
	if out.SendMessage.ID == "" {
		t.Fatal("sendMessage returned no id")
	}
	return out.SendMessage
}

// htSendMany sends n messages "<prefix> i" in one request (aliased
// mutations run in order) and returns their IDs in order.
func htSendMany(t testing.TB, s *apptest.Server, u apptest.User, conv, prefix string, n int) []string {
	t.Helper()
	var q strings.Builder
	q.WriteString("mutation($c: ID!) {")
	for i := range n {
		fmt.Fprintf(&q, " m%d: sendMessage(input: {conversationId: $c, body: \"%s %d\"}) { id }", i, prefix, i)
	}
	q.WriteString(" }")
	var out map[string]struct{ ID string }
	htOK(t, htPost(t, s, u.Token, q.String(), map[string]any{"c": conv}), &out)
	ids := make([]string, n)
	for i := range n {
		ids[i] = out[fmt.Sprintf("m%d", i)].ID
		if ids[i] == "" {
			t.Fatalf("message %d has no id", i)
		}
	}
	return ids
}

// htMsgTotal is Conversation.messages.totalCount as u sees it.
func htMsgTotal(t testing.TB, s *apptest.Server, u apptest.User, conv string) int {
	t.Helper()
	var out struct {
		Conversation *struct{ Messages struct{ TotalCount int } }
	}
	htOK(t, htPost(t, s, u.Token, `query($c: ID!) { conversation(id: $c) { messages(first: 1) { totalCount } } }`,
		map[string]any{"c": conv}), &out)
	if out.Conversation == nil {
		t.Fatalf("conversation %s not visible to %s", conv, u.Username)
	}
	return out.Conversation.Messages.TotalCount
}

// htConvTotal is conversations.totalCount as u sees it.
func htConvTotal(t testing.TB, s *apptest.Server, u apptest.User) int {
	t.Helper()
	var out struct{ Conversations struct{ TotalCount int } }
	htOK(t, htPost(t, s, u.Token, `{ conversations(first: 1) { totalCount } }`, nil), &out)
	return out.Conversations.TotalCount
}

const htMessageFields = `id body clientMessageId sender { id } conversation { id } ` +
	`attachments { id filename contentType size url } createdAt editedAt deletedAt`

type htAttachment struct {
	ID, Filename, ContentType, URL string
	Size                           int
}

type htMessage struct {
	ID              string
	Body            string
	ClientMessageID *string
	Sender          struct{ ID string }
	Conversation    struct{ ID string }
	Attachments     []htAttachment
	CreatedAt       time.Time
	EditedAt        *time.Time
	DeletedAt       *time.Time
}

const htConvFields = `id kind title participants { id username } unreadCount ` +
	`readReceipts { user { id } lastReadMessageId readAt } lastMessage { id body } createdAt updatedAt`

type htConversation struct {
	ID           string
	Kind         string
	Title        *string
	Participants []struct{ ID, Username string }
	UnreadCount  int
	ReadReceipts []struct {
		User              struct{ ID string }
		LastReadMessageID *string
		ReadAt            *time.Time
	}
	LastMessage *struct{ ID, Body string }
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func (c *htConversation) participantIDs() []string {
	var ids []string
	for _, p := range c.Participants {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// htConv fetches conversation(id) as u sees it (nil when null).
func htConv(t testing.TB, s *apptest.Server, u apptest.User, id string) *htConversation {
	t.Helper()
	var out struct{ Conversation *htConversation }
	htOK(t, htPost(t, s, u.Token, `query($c: ID!) { conversation(id: $c) { `+htConvFields+` } }`,
		map[string]any{"c": id}), &out)
	return out.Conversation
}

func htSorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

type htStats struct {
	ConversationCount, UnreadConversationCount, UnreadMessageCount, SentMessageCount int
}

func htGetStats(t testing.TB, s *apptest.Server, u apptest.User) htStats {
	t.Helper()
	var out struct{ MessagingStats htStats }
	htOK(t, htPost(t, s, u.Token,
		`{ messagingStats { conversationCount unreadConversationCount unreadMessageCount sentMessageCount } }`, nil), &out)
	return out.MessagingStats
}

// htSign signs arbitrary claims with secret (HS256).
func htSign(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// htAPICodes are the extensions.code values API.md allows.
var htAPICodes = []string{"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "RATE_LIMITED",
	"GRAPHQL_VALIDATION_FAILED", "INTERNAL_SERVER_ERROR"}

// ---------------------------------------------------------------------------
// 1. register, login, tokens

func TestAuthRegisterLogin(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)

	// Register: mixed case is stored lower-case; displayName defaults to it.
	r := htPost(t, s, "", `mutation { register(username: "Alice_Reg", password: "password-123") { token user { id username displayName } } }`, nil)
	var reg struct {
		Register struct {
			Token string
			User  struct{ ID, Username, DisplayName string }
		}
	}
	htOK(t, r, &reg)
	if reg.Register.Token == "" || reg.Register.User.ID == "" {
		t.Fatalf("register returned no token or id: %s", r.Raw)
	}
	if reg.Register.User.Username != "alice_reg" || reg.Register.User.DisplayName != "alice_reg" {
		t.Fatalf("want username and displayName alice_reg, got %+v", reg.Register.User)
	}
	// A JWT, HS256, sub = user id, exp set (and in the future).
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(reg.Register.Token, &claims, func(*jwt.Token) (any, error) { return s.App.Config.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid {
		t.Fatalf("token is not an HS256 JWT signed with JWT_SECRET: %v", err)
	}
	if claims.Subject != reg.Register.User.ID || claims.ExpiresAt == nil || !claims.ExpiresAt.After(time.Now()) {
		t.Fatalf("token claims: sub %q exp %v", claims.Subject, claims.ExpiresAt)
	}

	// The token works for me.
	var me struct{ Me struct{ ID, Username string } }
	htOK(t, htPost(t, s, reg.Register.Token, `{ me { id username } }`, nil), &me)
	if me.Me.ID != reg.Register.User.ID || me.Me.Username != "alice_reg" {
		t.Fatalf("me = %+v, want %s", me.Me, reg.Register.User.ID)
	}

	// A taken username, in any case, is BAD_USER_INPUT; nothing is created.
	htErr(t, htPost(t, s, "", `mutation { register(username: "ALICE_reg", password: "another-password") { token } }`, nil), "BAD_USER_INPUT")

	// Invalid usernames, passwords and display names (checked before hashing).
	for _, c := range []struct{ name, user, pass, display string }{
		{"too short", "ab", "password-123", ""},
		{"too long", strings.Repeat("a", 33), "password-123", ""},
		{"space", "has space", "password-123", ""},
		{"symbol", "bob!", "password-123", ""},
		{"empty", "", "password-123", ""},
		{"short password", "valid_name", "1234567", ""},
		{"long password", "valid_name", strings.Repeat("p", 73), ""},
		{"password over 72 bytes in 40 characters", "valid_name", strings.Repeat("é", 40), ""},
		{"long display name", "valid_name", "password-123", strings.Repeat("d", 65)},
	} {
		vars := map[string]any{"u": c.user, "p": c.pass}
		if c.display != "" {
			vars["d"] = c.display
		}
		r := htPost(t, s, "", `mutation($u: String!, $p: String!, $d: String) { register(username: $u, password: $p, displayName: $d) { token } }`, vars)
		if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%s: want BAD_USER_INPUT, got %s", c.name, r.Raw)
		}
	}
	var users struct{ Users []struct{ Username string } }
	htOK(t, htPost(t, s, reg.Register.Token, `{ users(first: 100) { username } }`, nil), &users)
	if len(users.Users) != 1 || users.Users[0].Username != "alice_reg" {
		t.Fatalf("failed registrations created users: %+v", users.Users)
	}

	// Login is case-insensitive on the username and returns a working token.
	var login struct {
		Login struct {
			Token string
			User  struct{ ID string }
		}
	}
	htOK(t, htPost(t, s, "", `mutation { login(username: "ALICE_REG", password: "password-123") { token user { id } } }`, nil), &login)
	if login.Login.User.ID != reg.Register.User.ID || login.Login.Token == "" {
		t.Fatalf("login returned %+v", login.Login)
	}
	htOK(t, htPost(t, s, login.Login.Token, `{ me { id } }`, nil), &me)
	if me.Me.ID != reg.Register.User.ID {
		t.Fatalf("login token is for %s", me.Me.ID)
	}

	// Wrong password and unknown user: UNAUTHENTICATED, indistinguishable.
	wrong := htPost(t, s, "", `mutation { login(username: "alice_reg", password: "wrong-password") { token } }`, nil)
	htErr(t, wrong, "UNAUTHENTICATED")
	unknown := htPost(t, s, "", `mutation { login(username: "nobody_here", password: "password-123") { token } }`, nil)
	htErr(t, unknown, "UNAUTHENTICATED")
	if wrong.Errors[0].Message != unknown.Errors[0].Message {
		t.Errorf("login errors tell unknown users apart: %q vs %q", wrong.Errors[0].Message, unknown.Errors[0].Message)
	}
	if strings.Contains(string(wrong.Raw), "token\":\"") {
		t.Errorf("failed login returned a token: %s", wrong.Raw)
	}
}

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, apptest.Ptr("group"), bob)
	msg := htSend(t, s, alice, conv, "hello").ID

	ops := map[string]struct {
		q    string
		vars map[string]any
	}{
		"me":                   {`{ me { id } }`, nil},
		"users":                {`{ users { id } }`, nil},
		"node":                 {`query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": conv}},
		"conversations":        {`{ conversations { totalCount } }`, nil},
		"conversation":         {`query($id: ID!) { conversation(id: $id) { id } }`, map[string]any{"id": conv}},
		"messagingStats":       {`{ messagingStats { conversationCount } }`, nil},
		"createConversation":   {`mutation($b: ID!) { createConversation(input: {participantIds: [$b]}) { id } }`, map[string]any{"b": bob.ID}},
		"addParticipants":      {`mutation($c: ID!, $b: ID!) { addParticipants(conversationId: $c, userIds: [$b]) { id } }`, map[string]any{"c": conv, "b": bob.ID}},
		"leaveConversation":    {`mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": conv}},
		"sendMessage":          {`mutation($c: ID!) { sendMessage(input: {conversationId: $c, body: "x"}) { id } }`, map[string]any{"c": conv}},
		"editMessage":          {`mutation($m: ID!) { editMessage(id: $m, body: "x") { id } }`, map[string]any{"m": msg}},
		"deleteMessage":        {`mutation($m: ID!) { deleteMessage(id: $m) { id } }`, map[string]any{"m": msg}},
		"markConversationRead": {`mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": conv}},
		"setTyping":            {`mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv}},
	}
	secret := s.App.Config.JWTSecret
	now := time.Now()
	valid := alice.Token
	parts := strings.Split(valid, ".")
	// Same signature, payload changed to claim Bob's identity.
	payload, _ := json.Marshal(map[string]any{"sub": bob.ID, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	// Signature bytes flipped.
	sig := []byte(parts[2])
	sig[len(sig)/2] ^= 0x01
	if sig[len(sig)/2] == parts[2][len(sig)/2] {
		t.Fatal("tamper failed")
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	noneTok := noneHeader + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	otherSecret := htSign(t, []byte("another-secret-another-secret-0123456"), jwt.MapClaims{"sub": alice.ID, "exp": now.Add(time.Hour).Unix()})

	tokens := map[string]string{
		"none":          "",
		"garbage":       "garbage",
		"expired":       htSign(t, secret, jwt.MapClaims{"sub": alice.ID, "exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()}),
		"no exp":        htSign(t, secret, jwt.MapClaims{"sub": alice.ID}),
		"no sub":        htSign(t, secret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}),
		"tampered":      tampered,
		"bad signature": badSig,
		"alg none":      noneTok,
		"other secret":  otherSecret,
	}
	for tname, tok := range tokens {
		for oname, op := range ops {
			r := htPost(t, s, tok, op.q, op.vars)
			if len(r.Errors) == 0 || r.Errors[0].Code() != "UNAUTHENTICATED" {
				t.Errorf("token %s, %s: want UNAUTHENTICATED, got %s", tname, oname, r.Raw)
			}
			if strings.Contains(string(r.Raw), "hello") {
				t.Errorf("token %s, %s: leaked message body: %s", tname, oname, r.Raw)
			}
		}
	}
	// A well-signed token of a user that does not exist is not a session.
	ghost := htSign(t, secret, jwt.MapClaims{"sub": "usr_doesnotexist000000", "exp": now.Add(time.Hour).Unix()})
	htErr(t, htPost(t, s, ghost, `{ me { id } }`, nil), "UNAUTHENTICATED")

	// Nothing the anonymous and forged requests tried changed anything.
	c := htConv(t, s, alice, conv)
	if c == nil || len(c.Participants) != 2 || c.LastMessage == nil || c.LastMessage.Body != "hello" {
		t.Fatalf("conversation changed by unauthenticated requests: %+v", c)
	}
	if n := htMsgTotal(t, s, alice, conv); n != 1 {
		t.Fatalf("unauthenticated sends stored messages: totalCount %d", n)
	}
	if n := htConvTotal(t, s, bob); n != 1 {
		t.Fatalf("unauthenticated createConversation stored something: bob has %d conversations", n)
	}

	// The valid token still works.
	var me struct{ Me struct{ ID string } }
	htOK(t, htPost(t, s, alice.Token, `{ me { id } }`, nil), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("me = %s, want %s", me.Me.ID, alice.ID)
	}
	// Introspection needs no token.
	var intro struct {
		Schema struct{ QueryType struct{ Name string } } `json:"__schema"`
	}
	htOK(t, htPost(t, s, "", `{ __schema { queryType { name } } }`, nil), &intro)
	if intro.Schema.QueryType.Name != "Query" {
		t.Fatalf("introspection: %+v", intro)
	}
}

// ---------------------------------------------------------------------------
// 2. users

func TestUsersSearch(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	viewer := htUser(t, s, "viewer")
	a1, a2, b := htUser(t, s, "zed_apple"), htUser(t, s, "zed_apricot"), htUser(t, s, "zed_banana")
	// Display names are searched too.
	if _, err := s.App.DB.Client.User.UpdateOneID(b.ID).SetDisplayName("Banana APPLE-lover").Save(context.Background()); err != nil {
		t.Fatal(err)
	}

	users := func(q string, vars map[string]any) []string {
		t.Helper()
		var out struct {
			Users []struct{ ID, Username string }
		}
		htOK(t, htPost(t, s, viewer.Token, q, vars), &out)
		var names []string
		for _, u := range out.Users {
			names = append(names, u.Username)
		}
		return names
	}
	got := users(`{ users(search: "AP") { id username } }`, nil)
	want := []string{a1.Username, a2.Username, b.Username} // by username
	if !slices.Equal(got, want) {
		t.Fatalf("search AP: got %v, want %v", got, want)
	}
	if got := users(`{ users(search: "apple") { id username } }`, nil); !slices.Equal(got, []string{a1.Username, b.Username}) {
		t.Fatalf("search apple (display name): got %v", got)
	}
	if got := users(`{ users(search: "nothing-matches") { id username } }`, nil); len(got) != 0 {
		t.Fatalf("search nothing: got %v", got)
	}
	// The search text is literal, not a LIKE pattern.
	for _, pattern := range []string{"%", "a_p", "z%a", "*"} {
		if got := users(`query($q: String) { users(search: $q) { id username } }`, map[string]any{"q": pattern}); len(got) != 0 {
			t.Errorf("search %q matched %v", pattern, got)
		}
	}
	all := users(`{ users { id username } }`, nil)
	if len(all) != 4 || !slices.IsSorted(all) {
		t.Fatalf("all users: got %v, want 4 sorted", all)
	}
	if got := users(`{ users(search: "zed", first: 2) { id username } }`, nil); !slices.Equal(got, []string{a1.Username, a2.Username}) {
		t.Fatalf("first 2: got %v", got)
	}
	if got := users(`{ users(first: 100) { id username } }`, nil); len(got) != 4 {
		t.Fatalf("first 100: got %v", got)
	}
	for _, first := range []int{101, 1000, -1} {
		htErr(t, htPost(t, s, viewer.Token, `query($f: Int) { users(first: $f) { id } }`, map[string]any{"f": first}), "BAD_USER_INPUT")
	}
}

// ---------------------------------------------------------------------------
// 3. createConversation

func TestCreateConversation(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "carol")
	create := func(u apptest.User, ids []string, title any) *htResp {
		return htPost(t, s, u.Token, `mutation($in: CreateConversationInput!) { createConversation(input: $in) { `+htConvFields+` } }`,
			map[string]any{"in": map[string]any{"participantIds": ids, "title": title}})
	}
	type out struct{ CreateConversation htConversation }

	// DIRECT: kind DIRECT, title null, both in it.
	var d1 out
	htOK(t, create(alice, []string{bob.ID}, nil), &d1)
	dc := d1.CreateConversation
	if dc.Kind != "DIRECT" || dc.Title != nil {
		t.Fatalf("direct conversation: kind %s title %v", dc.Kind, dc.Title)
	}
	if !slices.Equal(dc.participantIDs(), htSorted(alice.ID, bob.ID)) {
		t.Fatalf("direct participants %v", dc.participantIDs())
	}
	if dc.CreatedAt.IsZero() || dc.UpdatedAt.Before(dc.CreatedAt) || dc.LastMessage != nil || dc.UnreadCount != 0 {
		t.Fatalf("fresh conversation: %+v", dc)
	}
	// Same pair again, from either side, even naming the caller too: same conversation.
	for _, c := range []struct {
		u   apptest.User
		ids []string
	}{{alice, []string{bob.ID}}, {bob, []string{alice.ID}}, {bob, []string{alice.ID, bob.ID}}, {alice, []string{bob.ID, bob.ID}}} {
		var again out
		htOK(t, create(c.u, c.ids, nil), &again)
		if again.CreateConversation.ID != dc.ID || again.CreateConversation.Kind != "DIRECT" {
			t.Fatalf("%s %v: got %s (%s), want the DIRECT %s", c.u.Username, c.ids, again.CreateConversation.ID, again.CreateConversation.Kind, dc.ID)
		}
	}
	if n := htConvTotal(t, s, alice); n != 1 {
		t.Fatalf("alice has %d conversations after DIRECT dedupe, want 1", n)
	}
	if n := htConvTotal(t, s, bob); n != 1 {
		t.Fatalf("bob has %d conversations after DIRECT dedupe, want 1", n)
	}

	// A title makes a GROUP, even with one other person; the caller is in it
	// without naming themselves.
	var g out
	htOK(t, create(alice, []string{bob.ID}, "Weekend plans"), &g)
	gc := g.CreateConversation
	if gc.Kind != "GROUP" || gc.Title == nil || *gc.Title != "Weekend plans" || gc.ID == dc.ID {
		t.Fatalf("titled conversation: %+v", gc)
	}
	if !slices.Equal(gc.participantIDs(), htSorted(alice.ID, bob.ID)) {
		t.Fatalf("group participants %v", gc.participantIDs())
	}
	var g2 out
	htOK(t, create(alice, []string{bob.ID}, "Weekend plans"), &g2)
	if g2.CreateConversation.ID == gc.ID {
		t.Fatal("two titled conversations were merged")
	}
	// Several others: GROUP, caller included, duplicates ignored.
	var g3 out
	htOK(t, create(carol, []string{alice.ID, bob.ID, alice.ID}, nil), &g3)
	if g3.CreateConversation.Kind != "GROUP" || !slices.Equal(g3.CreateConversation.participantIDs(), htSorted(alice.ID, bob.ID, carol.ID)) {
		t.Fatalf("three-person conversation: %+v", g3.CreateConversation)
	}
	// Everyone sees it.
	for _, u := range []apptest.User{alice, bob, carol} {
		if c := htConv(t, s, u, g3.CreateConversation.ID); c == nil {
			t.Fatalf("%s does not see the group", u.Username)
		}
	}

	// Unknown participant: BAD_USER_INPUT and nothing created.
	before := htConvTotal(t, s, alice)
	htErr(t, create(alice, []string{bob.ID, "usr_doesnotexist000000"}, "ghosts"), "BAD_USER_INPUT")
	htErr(t, create(alice, []string{"usr_doesnotexist000000"}, nil), "BAD_USER_INPUT")
	htErr(t, create(alice, []string{"not-an-id"}, nil), "BAD_USER_INPUT")
	if after := htConvTotal(t, s, alice); after != before {
		t.Fatalf("failed createConversation stored something: %d -> %d", before, after)
	}
	if n := htConvTotal(t, s, bob); n != 4 {
		t.Fatalf("bob has %d conversations, want 4", n)
	}
	// A title longer than 200 characters is BAD_USER_INPUT.
	htErr(t, create(alice, []string{bob.ID}, strings.Repeat("t", 201)), "BAD_USER_INPUT")
	if after := htConvTotal(t, s, alice); after != before {
		t.Fatalf("over-long title stored a conversation: %d -> %d", before, after)
	}
}

func TestCreateDirectConversationConcurrently(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u, other := alice, bob
			if i%2 == 1 {
				u, other = bob, alice
			}
			r, err := htPostE(s, u.Token, `mutation($o: ID!) { createConversation(input: {participantIds: [$o]}) { id kind } }`,
				map[string]any{"o": other.ID})
			if err != nil {
				errs[i] = err
				return
			}
			if len(r.Errors) > 0 {
				errs[i] = fmt.Errorf("%s", r.Raw)
				return
			}
			var out struct{ CreateConversation struct{ ID, Kind string } }
			errs[i] = json.Unmarshal(r.Data, &out)
			ids[i] = out.CreateConversation.ID
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("concurrent DIRECT creation returned different conversations: %v", ids)
		}
	}
	if a, b := htConvTotal(t, s, alice), htConvTotal(t, s, bob); a != 1 || b != 1 {
		t.Fatalf("concurrent DIRECT creation stored %d/%d conversations, want 1", a, b)
	}
}

// ---------------------------------------------------------------------------
// 4. addParticipants, leaveConversation

func TestParticipantsAddAndLeave(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol, dave := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "carol"), htUser(t, s, "dave")
	group := htCreateConv(t, s, alice, apptest.Ptr("team"), bob)
	direct := htCreateConv(t, s, alice, nil, bob)
	add := func(u apptest.User, conv string, ids ...string) *htResp {
		return htPost(t, s, u.Token, `mutation($c: ID!, $ids: [ID!]!) { addParticipants(conversationId: $c, userIds: $ids) { id kind participants { id } } }`,
			map[string]any{"c": conv, "ids": ids})
	}

	// Carol cannot see the group before she is added.
	if c := htConv(t, s, carol, group); c != nil {
		t.Fatal("carol sees the group before being added")
	}
	// Unknown user among valid ones: BAD_USER_INPUT and nobody is added.
	htErr(t, add(alice, group, carol.ID, "usr_doesnotexist000000"), "BAD_USER_INPUT")
	if c := htConv(t, s, alice, group); !slices.Equal(c.participantIDs(), htSorted(alice.ID, bob.ID)) {
		t.Fatalf("failed addParticipants changed participants: %v", c.participantIDs())
	}
	if c := htConv(t, s, carol, group); c != nil {
		t.Fatal("carol was added by a failed addParticipants")
	}
	// DIRECT: BAD_USER_INPUT.
	htErr(t, add(alice, direct, carol.ID), "BAD_USER_INPUT")
	if c := htConv(t, s, alice, direct); len(c.Participants) != 2 || c.Kind != "DIRECT" {
		t.Fatalf("DIRECT conversation changed: %+v", c)
	}
	if c := htConv(t, s, carol, direct); c != nil {
		t.Fatal("carol was added to a DIRECT conversation")
	}

	// Bob (any participant) adds Carol; users already in it are left alone.
	var out struct {
		AddParticipants struct {
			ID           string
			Participants []struct{ ID string }
		}
	}
	htOK(t, add(bob, group, carol.ID, alice.ID, carol.ID), &out)
	if out.AddParticipants.ID != group || len(out.AddParticipants.Participants) != 3 {
		t.Fatalf("addParticipants returned %+v", out.AddParticipants)
	}
	c := htConv(t, s, carol, group)
	if c == nil || !slices.Equal(c.participantIDs(), htSorted(alice.ID, bob.ID, carol.ID)) {
		t.Fatalf("after add: %+v", c)
	}
	if len(c.ReadReceipts) != 3 {
		t.Fatalf("after add: %d read receipts, want 3", len(c.ReadReceipts))
	}
	htOK(t, add(alice, group, carol.ID), nil) // adding again: no duplicate
	if c := htConv(t, s, alice, group); len(c.Participants) != 3 {
		t.Fatalf("re-adding duplicated a participant: %v", c.participantIDs())
	}
	htSend(t, s, carol, group, "hi, I'm in") // the new participant can write
	att := htUploadOK(t, s, alice, group, htFile{Name: "team.txt", ContentType: "text/plain", Data: []byte("team file")})
	htSendWith(t, s, alice, group, "file for the team", att.ID)
	if status, _, _ := htDownload(t, s, carol.Token, att.URL); status != http.StatusOK {
		t.Fatalf("participant download: %d", status)
	}

	// Carol leaves: the group is gone for her, still there for the others.
	var left struct{ LeaveConversation bool }
	htOK(t, htPost(t, s, carol.Token, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": group}), &left)
	if !left.LeaveConversation {
		t.Fatal("leaveConversation returned false")
	}
	if c := htConv(t, s, carol, group); c != nil {
		t.Fatalf("leaver still sees the conversation: %+v", c)
	}
	var node struct{ Node *struct{ ID string } }
	htOK(t, htPost(t, s, carol.Token, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": group}), &node)
	if node.Node != nil {
		t.Fatal("leaver resolves the conversation through node")
	}
	htErr(t, htPost(t, s, carol.Token, htSendMutation, htSendInput(group, "still here?")), "NOT_FOUND")
	htErr(t, htPost(t, s, carol.Token, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": group}), "NOT_FOUND")
	htErr(t, add(carol, group, dave.ID), "NOT_FOUND")
	if n := htConvTotal(t, s, carol); n != 0 {
		t.Fatalf("leaver still counts %d conversations", n)
	}
	if st := htGetStats(t, s, carol); st.ConversationCount != 0 {
		t.Fatalf("leaver stats: %+v", st)
	}
	if c := htConv(t, s, alice, group); c == nil || !slices.Equal(c.participantIDs(), htSorted(alice.ID, bob.ID)) {
		t.Fatalf("others after leave: %+v", c)
	}
	if status, _, body := htDownload(t, s, carol.Token, att.URL); status != http.StatusNotFound || string(body) == "team file" {
		t.Fatalf("leaver downloads the group's attachment: %d", status)
	}
	if n := htMsgTotal(t, s, alice, group); n != 2 {
		t.Fatalf("the leaver's message is gone or the failed send stored one: totalCount %d", n)
	}
	// A DIRECT conversation cannot be left.
	htErr(t, htPost(t, s, bob.Token, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": direct}), "BAD_USER_INPUT")
	if c := htConv(t, s, bob, direct); c == nil {
		t.Fatal("bob left a DIRECT conversation")
	}
	// She can be added back.
	htOK(t, add(alice, group, carol.ID), nil)
	if c := htConv(t, s, carol, group); c == nil {
		t.Fatal("carol could not be added back")
	}
}

// ---------------------------------------------------------------------------
// 5. sendMessage

func TestSendMessage(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	before := htConv(t, s, alice, conv)

	// Trimmed body; fields filled; times in UTC with a Z.
	raw := htPost(t, s, alice.Token, htSendMutation, htSendInput(conv, "  \n\thello bob \t\n "))
	if !regexp.MustCompile(`"createdAt":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`).Match(raw.Raw) {
		t.Fatalf("createdAt is not RFC 3339 UTC: %s", raw.Raw)
	}
	var sent struct{ SendMessage htMessage }
	htOK(t, raw, &sent)
	m := sent.SendMessage
	if m.Body != "hello bob" {
		t.Fatalf("body not trimmed: %q", m.Body)
	}
	if m.Sender.ID != alice.ID || m.Conversation.ID != conv || m.ClientMessageID != nil ||
		m.EditedAt != nil || m.DeletedAt != nil || len(m.Attachments) != 0 || m.CreatedAt.IsZero() {
		t.Fatalf("sent message: %+v", m)
	}
	after := htConv(t, s, alice, conv)
	if !after.UpdatedAt.After(before.UpdatedAt) || after.UpdatedAt.Before(m.CreatedAt) {
		t.Fatalf("updatedAt not bumped: before %v, after %v, message %v", before.UpdatedAt, after.UpdatedAt, m.CreatedAt)
	}
	if after.LastMessage == nil || after.LastMessage.ID != m.ID {
		t.Fatalf("lastMessage = %+v, want %s", after.LastMessage, m.ID)
	}
	var typing struct{ SetTyping bool }
	htOK(t, htPost(t, s, bob.Token, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv}), &typing)
	if !typing.SetTyping {
		t.Fatal("setTyping returned false")
	}

	// Invalid bodies: BAD_USER_INPUT, nothing stored.
	for name, body := range map[string]string{
		"empty":      "",
		"whitespace": " \n\t  ",
		"4001 ascii": strings.Repeat("a", 4001),
		"4001 é":     strings.Repeat("é", 4001),
		"4001 emoji": strings.Repeat("😀", 4001),
		"nul":        "a\x00b",
	} {
		r := htPost(t, s, alice.Token, htSendMutation, htSendInput(conv, body))
		if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%s: want BAD_USER_INPUT, got %.300s", name, r.Raw)
		}
	}
	if n := htMsgTotal(t, s, alice, conv); n != 1 {
		t.Fatalf("invalid bodies stored messages: totalCount %d", n)
	}
	if c := htConv(t, s, alice, conv); c.LastMessage.ID != m.ID || !c.UpdatedAt.Equal(after.UpdatedAt) {
		t.Fatalf("invalid sends changed the conversation: %+v", c)
	}

	// 4000 characters are fine, whatever their byte length; surrounding
	// white space does not count.
	for name, body := range map[string]string{
		"4000 é":       strings.Repeat("é", 4000),
		"4000 emoji":   strings.Repeat("😀", 4000),
		"4000 +spaces": "   " + strings.Repeat("x", 4000) + "   ",
	} {
		got := htSend(t, s, alice, conv, body)
		if got.Body != strings.TrimSpace(body) {
			t.Errorf("%s: stored body differs (len %d)", name, len(got.Body))
		}
	}
	if n := htMsgTotal(t, s, alice, conv); n != 4 {
		t.Fatalf("totalCount %d, want 4", n)
	}

	// Unknown conversation: NOT_FOUND.
	htErr(t, htPost(t, s, alice.Token, htSendMutation, htSendInput("cnv_doesnotexist000000", "hi")), "NOT_FOUND")
	// clientMessageId limits.
	for _, id := range []string{strings.Repeat("k", 129)} {
		htErr(t, htPost(t, s, alice.Token, htSendMutation, map[string]any{"in": map[string]any{
			"conversationId": conv, "body": "hi", "clientMessageId": id}}), "BAD_USER_INPUT")
	}
	if n := htMsgTotal(t, s, alice, conv); n != 4 {
		t.Fatalf("failed sends stored messages: totalCount %d", n)
	}
}

func TestSendMessageIdempotent(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	other := htCreateConv(t, s, alice, apptest.Ptr("other"), bob)
	send := func(u apptest.User, conv, body, key string) htMessage {
		t.Helper()
		var out struct{ SendMessage htMessage }
		htOK(t, htPost(t, s, u.Token, htSendMutation, map[string]any{"in": map[string]any{
			"conversationId": conv, "body": body, "clientMessageId": key}}), &out)
		return out.SendMessage
	}
	first := send(alice, conv, "first", "key-1")
	if first.ClientMessageID == nil || *first.ClientMessageID != "key-1" {
		t.Fatalf("clientMessageId not echoed: %+v", first)
	}
	again := send(alice, conv, "second attempt, different body", "key-1")
	if again.ID != first.ID || again.Body != "first" || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("retry returned %+v, want the first message %+v", again, first)
	}
	if n := htMsgTotal(t, s, alice, conv); n != 1 {
		t.Fatalf("retry stored a second message: totalCount %d", n)
	}
	if st := htGetStats(t, s, alice); st.SentMessageCount != 1 {
		t.Fatalf("sentMessageCount %d, want 1", st.SentMessageCount)
	}
	if st := htGetStats(t, s, bob); st.UnreadMessageCount != 1 {
		t.Fatalf("bob unreadMessageCount %d, want 1", st.UnreadMessageCount)
	}
	// The key is per sender and per conversation.
	if m := send(bob, conv, "bob's", "key-1"); m.ID == first.ID || m.Sender.ID != bob.ID {
		t.Fatalf("another sender's key collided: %+v", m)
	}
	if m := send(alice, other, "elsewhere", "key-1"); m.ID == first.ID || m.Conversation.ID != other {
		t.Fatalf("the same key in another conversation collided: %+v", m)
	}
	if n := htMsgTotal(t, s, alice, conv); n != 2 {
		t.Fatalf("totalCount %d, want 2", n)
	}

	// 10 concurrent sends with one key: one message, the same ID for all.
	const n = 10
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := htPostE(s, alice.Token, htSendMutation, map[string]any{"in": map[string]any{
				"conversationId": conv, "body": fmt.Sprintf("racing %d", i), "clientMessageId": "race-key"}})
			if err != nil {
				errs[i] = err
				return
			}
			if len(r.Errors) > 0 {
				errs[i] = fmt.Errorf("%s", r.Raw)
				return
			}
			var out struct{ SendMessage struct{ ID string } }
			errs[i] = json.Unmarshal(r.Data, &out)
			ids[i] = out.SendMessage.ID
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent send %d: %v", i, errs[i])
		}
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("concurrent sends with one clientMessageId returned different messages: %v", ids)
		}
	}
	if got := htMsgTotal(t, s, alice, conv); got != 3 {
		t.Fatalf("concurrent sends stored %d messages, want 1 (totalCount %d, want 3)", got-2, got)
	}
}

// TestConcurrentWrites sends from two users into two conversations at once,
// with read markers moving meanwhile: every send succeeds, each message is
// stored once and pages back exactly once.
func TestConcurrentWrites(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	convs := []string{htCreateConv(t, s, alice, nil, bob), htCreateConv(t, s, alice, apptest.Ptr("busy"), bob)}
	const n = 40
	type result struct {
		conv, id string
		err      error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u, conv := alice, convs[i%2]
			if i%4 >= 2 {
				u = bob
			}
			if i%10 == 9 {
				r, err := htPostE(s, u.Token, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": conv})
				if err == nil && len(r.Errors) > 0 {
					err = fmt.Errorf("%s", r.Raw)
				}
				results[i] = result{err: err}
				return
			}
			r, err := htPostE(s, u.Token, htSendMutation, htSendInput(conv, fmt.Sprintf("concurrent %d", i)))
			if err == nil && len(r.Errors) > 0 {
				err = fmt.Errorf("%s", r.Raw)
			}
			var out struct{ SendMessage struct{ ID string } }
			if err == nil {
				err = json.Unmarshal(r.Data, &out)
			}
			results[i] = result{conv: conv, id: out.SendMessage.ID, err: err}
		})
	}
	wg.Wait()
	want := map[string][]string{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.id != "" {
			want[r.conv] = append(want[r.conv], r.id)
		}
	}
	for _, conv := range convs {
		var out struct {
			Conversation struct {
				LastMessage struct{ ID string }
				Messages    htPage
			}
		}
		htOK(t, htPost(t, s, bob.Token, `query($c: ID!) { conversation(id: $c) { lastMessage { id }
			messages(first: 100) { totalCount edges { node { id } } } } }`, map[string]any{"c": conv}), &out)
		got := out.Conversation.Messages.ids()
		if out.Conversation.Messages.TotalCount != len(want[conv]) || !slices.Equal(htSorted(got...), htSorted(want[conv]...)) {
			t.Fatalf("conversation %s: stored %v (totalCount %d), sent %v", conv, got, out.Conversation.Messages.TotalCount, want[conv])
		}
		if out.Conversation.LastMessage.ID != got[len(got)-1] {
			t.Fatalf("lastMessage %s is not the newest message %s", out.Conversation.LastMessage.ID, got[len(got)-1])
		}
	}
}

func TestConversationsOrderedByActivity(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	c1 := htCreateConv(t, s, alice, apptest.Ptr("one"), bob)
	c2 := htCreateConv(t, s, alice, apptest.Ptr("two"), bob)
	c3 := htCreateConv(t, s, alice, apptest.Ptr("three"), bob)
	order := func(u apptest.User) []string {
		t.Helper()
		var out struct {
			Conversations struct {
				Edges []struct {
					Node struct {
						ID        string
						UpdatedAt time.Time
					}
				}
			}
		}
		htOK(t, htPost(t, s, u.Token, `{ conversations { edges { node { id updatedAt } } } }`, nil), &out)
		var ids []string
		for i, e := range out.Conversations.Edges {
			ids = append(ids, e.Node.ID)
			if i > 0 && e.Node.UpdatedAt.After(out.Conversations.Edges[i-1].Node.UpdatedAt) {
				t.Fatalf("conversations not ordered by updatedAt desc")
			}
		}
		return ids
	}
	if got := order(alice); !slices.Equal(got, []string{c3, c2, c1}) {
		t.Fatalf("initial order %v, want newest first [%s %s %s]", got, c3, c2, c1)
	}
	htSend(t, s, bob, c1, "bump one")
	if got := order(alice); !slices.Equal(got, []string{c1, c3, c2}) {
		t.Fatalf("after message in c1: %v", got)
	}
	htSend(t, s, alice, c2, "bump two")
	for _, u := range []apptest.User{alice, bob} {
		if got := order(u); !slices.Equal(got, []string{c2, c1, c3}) {
			t.Fatalf("%s after message in c2: %v", u.Username, got)
		}
	}
	htSend(t, s, bob, c3, "bump three")
	if got := order(bob); !slices.Equal(got, []string{c3, c2, c1}) {
		t.Fatalf("after message in c3: %v", got)
	}
}

// TestMutationsInOneRequest checks that mutations sent together in one
// document (executed one after the other, as GraphQL requires) each see
// the state left by the ones before them, not data cached earlier in the
// same request.
func TestMutationsInOneRequest(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)

	var sends map[string]struct {
		ID           string
		Conversation struct {
			LastMessage struct{ ID string }
			Messages    struct{ TotalCount int }
		}
	}
	htOK(t, htPost(t, s, alice.Token, `mutation($c: ID!) {
		a: sendMessage(input: {conversationId: $c, body: "one"}) { id conversation { lastMessage { id } messages { totalCount } } }
		b: sendMessage(input: {conversationId: $c, body: "two"}) { id conversation { lastMessage { id } messages { totalCount } } } }`,
		map[string]any{"c": conv}), &sends)
	a, b := sends["a"], sends["b"]
	if a.Conversation.LastMessage.ID != a.ID || a.Conversation.Messages.TotalCount != 1 {
		t.Errorf("first send sees %+v", a.Conversation)
	}
	if b.Conversation.LastMessage.ID != b.ID || b.Conversation.Messages.TotalCount != 2 {
		t.Errorf("second send in the same request: conversation.lastMessage %s, want %s (stale)", b.Conversation.LastMessage.ID, b.ID)
	}

	var reads map[string]struct {
		UnreadCount  int
		ReadReceipts []struct {
			User              struct{ ID string }
			LastReadMessageID *string
		}
	}
	htOK(t, htPost(t, s, bob.Token, `mutation($c: ID!, $m: ID!) {
		a: markConversationRead(conversationId: $c, upToMessageId: $m) { unreadCount readReceipts { user { id } lastReadMessageId } }
		b: markConversationRead(conversationId: $c) { unreadCount readReceipts { user { id } lastReadMessageId } } }`,
		map[string]any{"c": conv, "m": a.ID}), &reads)
	if reads["a"].UnreadCount != 1 {
		t.Errorf("after reading the first message: unreadCount %d, want 1", reads["a"].UnreadCount)
	}
	if reads["b"].UnreadCount != 0 {
		t.Errorf("after reading all in the same request: unreadCount %d, want 0 (stale)", reads["b"].UnreadCount)
	}
	for _, r := range reads["b"].ReadReceipts {
		if r.User.ID == bob.ID && (r.LastReadMessageID == nil || *r.LastReadMessageID != b.ID) {
			got := "null"
			if r.LastReadMessageID != nil {
				got = *r.LastReadMessageID
			}
			t.Errorf("after reading all in the same request: bob's receipt at %s, want %s (stale)", got, b.ID)
		}
	}

	var changes map[string]struct {
		ID           string
		Body         string
		Conversation struct{ LastMessage struct{ Body string } }
	}
	htOK(t, htPost(t, s, alice.Token, `mutation($m: ID!) {
		e: editMessage(id: $m, body: "edited") { id body conversation { lastMessage { body } } }
		d: deleteMessage(id: $m) { id body conversation { lastMessage { body } } } }`,
		map[string]any{"m": b.ID}), &changes)
	if changes["e"].Body != "edited" || changes["e"].Conversation.LastMessage.Body != "edited" {
		t.Errorf("edit: %+v", changes["e"])
	}
	if changes["d"].Body != "" || changes["d"].Conversation.LastMessage.Body != "" {
		t.Errorf("delete after edit in the same request: lastMessage.body %q, want \"\" (stale)", changes["d"].Conversation.LastMessage.Body)
	}
}

// ---------------------------------------------------------------------------
// 6. editMessage, deleteMessage

func TestEditAndDeleteMessage(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, mallory := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "mallory")
	conv := htCreateConv(t, s, alice, apptest.Ptr("g"), bob)
	m := htSend(t, s, alice, conv, "original")
	keep := htSend(t, s, alice, conv, "keep me")
	const edit = `mutation($m: ID!, $b: String!) { editMessage(id: $m, body: $b) { ` + htMessageFields + ` } }`
	const del = `mutation($m: ID!) { deleteMessage(id: $m) { ` + htMessageFields + ` } }`

	// Only the sender: another participant is FORBIDDEN, an outsider NOT_FOUND.
	htErr(t, htPost(t, s, bob.Token, edit, map[string]any{"m": m.ID, "b": "bob was here"}), "FORBIDDEN")
	htErr(t, htPost(t, s, bob.Token, del, map[string]any{"m": m.ID}), "FORBIDDEN")
	htErr(t, htPost(t, s, mallory.Token, edit, map[string]any{"m": m.ID, "b": "mallory was here"}), "NOT_FOUND")
	htErr(t, htPost(t, s, mallory.Token, del, map[string]any{"m": m.ID}), "NOT_FOUND")
	htErr(t, htPost(t, s, alice.Token, edit, map[string]any{"m": "msg_doesnotexist000000", "b": "x"}), "NOT_FOUND")
	htErr(t, htPost(t, s, alice.Token, del, map[string]any{"m": "msg_doesnotexist000000"}), "NOT_FOUND")
	// Invalid new bodies.
	htErr(t, htPost(t, s, alice.Token, edit, map[string]any{"m": m.ID, "b": "   "}), "BAD_USER_INPUT")
	htErr(t, htPost(t, s, alice.Token, edit, map[string]any{"m": m.ID, "b": strings.Repeat("x", 4001)}), "BAD_USER_INPUT")
	list := func() []htMessage {
		t.Helper()
		var out struct {
			Conversation struct {
				Messages struct {
					TotalCount int
					Edges      []struct{ Node htMessage }
				}
			}
		}
		htOK(t, htPost(t, s, bob.Token, `query($c: ID!) { conversation(id: $c) { messages { totalCount edges { node { `+htMessageFields+` } } } } }`,
			map[string]any{"c": conv}), &out)
		var ms []htMessage
		for _, e := range out.Conversation.Messages.Edges {
			ms = append(ms, e.Node)
		}
		if out.Conversation.Messages.TotalCount != len(ms) {
			t.Fatalf("totalCount %d, edges %d", out.Conversation.Messages.TotalCount, len(ms))
		}
		return ms
	}
	if ms := list(); len(ms) != 2 || ms[0].Body != "original" || ms[0].EditedAt != nil {
		t.Fatalf("failed edits changed the message: %+v", ms)
	}

	// The sender edits: trimmed body, editedAt set, same id and createdAt.
	var e struct{ EditMessage htMessage }
	htOK(t, htPost(t, s, alice.Token, edit, map[string]any{"m": m.ID, "b": "  edited body  "}), &e)
	if e.EditMessage.ID != m.ID || e.EditMessage.Body != "edited body" || e.EditMessage.EditedAt == nil ||
		e.EditMessage.DeletedAt != nil || !e.EditMessage.CreatedAt.Equal(m.CreatedAt) || e.EditMessage.EditedAt.Before(m.CreatedAt) {
		t.Fatalf("edit returned %+v", e.EditMessage)
	}
	if ms := list(); ms[0].Body != "edited body" || ms[0].EditedAt == nil {
		t.Fatalf("edit not visible to bob: %+v", ms[0])
	}

	// Delete: tombstone with empty body and deletedAt, still listed.
	var d struct{ DeleteMessage htMessage }
	htOK(t, htPost(t, s, alice.Token, del, map[string]any{"m": m.ID}), &d)
	if d.DeleteMessage.ID != m.ID || d.DeleteMessage.Body != "" || d.DeleteMessage.DeletedAt == nil {
		t.Fatalf("delete returned %+v", d.DeleteMessage)
	}
	ms := list()
	if len(ms) != 2 || ms[0].ID != m.ID || ms[0].Body != "" || ms[0].DeletedAt == nil || ms[1].ID != keep.ID || ms[1].Body != "keep me" {
		t.Fatalf("after delete: %+v", ms)
	}
	if strings.Contains(string(htPost(t, s, bob.Token, `query($id: ID!) { node(id: $id) { ... on Message { body } } }`,
		map[string]any{"id": m.ID}).Raw), "edited body") {
		t.Fatal("deleted body still served through node")
	}
	// Editing a tombstone: BAD_USER_INPUT. Deleting it again either fails
	// with BAD_USER_INPUT or changes nothing.
	htErr(t, htPost(t, s, alice.Token, edit, map[string]any{"m": m.ID, "b": "resurrect"}), "BAD_USER_INPUT")
	r2 := htPost(t, s, alice.Token, del, map[string]any{"m": m.ID})
	if len(r2.Errors) > 0 {
		htErr(t, r2, "BAD_USER_INPUT")
	} else {
		var d2 struct{ DeleteMessage htMessage }
		htOK(t, r2, &d2)
		if d2.DeleteMessage.Body != "" || d2.DeleteMessage.DeletedAt == nil || !d2.DeleteMessage.DeletedAt.Equal(*d.DeleteMessage.DeletedAt) {
			t.Fatalf("second delete: %+v (first deletedAt %v)", d2.DeleteMessage, d.DeleteMessage.DeletedAt)
		}
	}
	if ms := list(); ms[0].Body != "" || len(ms) != 2 {
		t.Fatalf("tombstone changed: %+v", ms[0])
	}
	// Bob still cannot touch the tombstone.
	htErr(t, htPost(t, s, bob.Token, del, map[string]any{"m": m.ID}), "FORBIDDEN")
	// Deleted messages no longer count as sent; the lastMessage tombstone shows "".
	if st := htGetStats(t, s, alice); st.SentMessageCount != 1 {
		t.Fatalf("sentMessageCount %d, want 1", st.SentMessageCount)
	}
	htOK(t, htPost(t, s, alice.Token, del, map[string]any{"m": keep.ID}), nil)
	if c := htConv(t, s, bob, conv); c.LastMessage == nil || c.LastMessage.ID != keep.ID || c.LastMessage.Body != "" {
		t.Fatalf("lastMessage after deleting it: %+v", c.LastMessage)
	}
}

// ---------------------------------------------------------------------------
// 7. read markers, unread counts, stats

func TestReadMarkersAndStats(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "carol")
	conv := htCreateConv(t, s, alice, apptest.Ptr("reading club"), bob, carol)
	other := htCreateConv(t, s, alice, nil, bob)
	const mark = `mutation($c: ID!, $m: ID) { markConversationRead(conversationId: $c, upToMessageId: $m) { ` + htConvFields + ` } }`
	markRead := func(u apptest.User, conv string, upTo any) htConversation {
		t.Helper()
		var out struct{ MarkConversationRead htConversation }
		htOK(t, htPost(t, s, u.Token, mark, map[string]any{"c": conv, "m": upTo}), &out)
		return out.MarkConversationRead
	}
	receipt := func(c *htConversation, u apptest.User) (*string, *time.Time) {
		t.Helper()
		for _, r := range c.ReadReceipts {
			if r.User.ID == u.ID {
				return r.LastReadMessageID, r.ReadAt
			}
		}
		t.Fatalf("no read receipt for %s", u.Username)
		return nil, nil
	}

	// Empty conversation: marking read is harmless.
	markRead(bob, conv, nil)
	c := htConv(t, s, bob, conv)
	if len(c.ReadReceipts) != 3 {
		t.Fatalf("%d read receipts, want one per participant", len(c.ReadReceipts))
	}
	seen := map[string]bool{}
	for _, r := range c.ReadReceipts {
		if seen[r.User.ID] {
			t.Fatalf("two receipts for %s", r.User.ID)
		}
		seen[r.User.ID] = true
		if r.LastReadMessageID != nil || r.ReadAt != nil {
			t.Fatalf("receipt before any message: %+v", r)
		}
	}

	m1 := htSend(t, s, alice, conv, "one").ID
	m2 := htSend(t, s, alice, conv, "two").ID
	m3 := htSend(t, s, alice, conv, "three").ID
	b1 := htSend(t, s, bob, conv, "bob's own").ID
	htSend(t, s, alice, other, "elsewhere")

	if c := htConv(t, s, bob, conv); c.UnreadCount != 3 {
		t.Fatalf("bob unread %d, want 3 (own message excluded)", c.UnreadCount)
	}
	if c := htConv(t, s, alice, conv); c.UnreadCount != 1 {
		t.Fatalf("alice unread %d, want 1", c.UnreadCount)
	}
	if c := htConv(t, s, carol, conv); c.UnreadCount != 4 {
		t.Fatalf("carol unread %d, want 4", c.UnreadCount)
	}
	if st := htGetStats(t, s, bob); st != (htStats{ConversationCount: 2, UnreadConversationCount: 2, UnreadMessageCount: 4, SentMessageCount: 1}) {
		t.Fatalf("bob stats %+v", st)
	}
	if st := htGetStats(t, s, alice); st != (htStats{ConversationCount: 2, UnreadConversationCount: 1, UnreadMessageCount: 1, SentMessageCount: 4}) {
		t.Fatalf("alice stats %+v", st)
	}

	// Bob reads up to m2: one unread (m3) left.
	c2 := markRead(bob, conv, m2)
	if c2.UnreadCount != 1 {
		t.Fatalf("after reading m2: unread %d, want 1", c2.UnreadCount)
	}
	last, at := receipt(&c2, bob)
	if last == nil || *last != m2 || at == nil {
		t.Fatalf("bob's receipt after m2: %v %v", last, at)
	}
	firstReadAt := *at
	if l, a := receipt(&c2, carol); l != nil || a != nil {
		t.Fatalf("carol's receipt moved: %v %v", l, a)
	}
	// The marker never moves back.
	c3 := markRead(bob, conv, m1)
	if last, at := receipt(&c3, bob); last == nil || *last != m2 || !at.Equal(firstReadAt) {
		t.Fatalf("marker moved back to m1: %v %v", last, at)
	}
	if c3.UnreadCount != 1 {
		t.Fatalf("unread after marking older: %d, want 1", c3.UnreadCount)
	}
	markRead(bob, conv, m2) // the same message again: no change either
	if c := htConv(t, s, bob, conv); c.UnreadCount != 1 {
		t.Fatalf("unread after re-marking: %d", c.UnreadCount)
	}
	// Other participants see Bob's receipt too.
	if l, _ := receipt(htConv(t, s, carol, conv), bob); l == nil || *l != m2 {
		t.Fatalf("carol sees bob's marker at %v", l)
	}

	// upToMessageId of another conversation or unknown: BAD_USER_INPUT, marker unchanged.
	otherMsg := htSend(t, s, alice, other, "other conv").ID
	htErr(t, htPost(t, s, bob.Token, mark, map[string]any{"c": conv, "m": otherMsg}), "BAD_USER_INPUT")
	htErr(t, htPost(t, s, bob.Token, mark, map[string]any{"c": conv, "m": "msg_doesnotexist000000"}), "BAD_USER_INPUT")
	if l, _ := receipt(htConv(t, s, bob, conv), bob); *l != m2 {
		t.Fatalf("marker moved by a bad upToMessageId: %v", *l)
	}
	// Unknown conversation: NOT_FOUND.
	htErr(t, htPost(t, s, bob.Token, mark, map[string]any{"c": "cnv_doesnotexist000000", "m": nil}), "NOT_FOUND")

	// A deleted unread message stops counting.
	htOK(t, htPost(t, s, alice.Token, `mutation($m: ID!) { deleteMessage(id: $m) { id } }`, map[string]any{"m": m3}), nil)
	if c := htConv(t, s, bob, conv); c.UnreadCount != 0 {
		t.Fatalf("deleted message still unread: %d", c.UnreadCount)
	}
	if c := htConv(t, s, carol, conv); c.UnreadCount != 3 {
		t.Fatalf("carol unread after delete %d, want 3", c.UnreadCount)
	}

	// Without upToMessageId: up to the newest.
	m4 := htSend(t, s, alice, conv, "four").ID
	c4 := markRead(carol, conv, nil)
	if c4.UnreadCount != 0 {
		t.Fatalf("carol unread after reading all: %d", c4.UnreadCount)
	}
	if l, a := receipt(&c4, carol); l == nil || *l != m4 || a == nil {
		t.Fatalf("carol's receipt: %v %v", l, a)
	}
	if st := htGetStats(t, s, carol); st != (htStats{ConversationCount: 1}) {
		t.Fatalf("carol stats after reading: %+v", st)
	}
	// Bob has one unread here (m4) and two in the DIRECT conversation.
	if st := htGetStats(t, s, bob); st != (htStats{ConversationCount: 2, UnreadConversationCount: 2, UnreadMessageCount: 3, SentMessageCount: 1}) {
		t.Fatalf("bob stats %+v", st)
	}
	markRead(bob, other, nil)
	markRead(bob, conv, b1) // older than his marker: stays at m2
	if st := htGetStats(t, s, bob); st != (htStats{ConversationCount: 2, UnreadConversationCount: 1, UnreadMessageCount: 1, SentMessageCount: 1}) {
		t.Fatalf("bob stats after reading the DIRECT conversation: %+v", st)
	}
}

// ---------------------------------------------------------------------------
// 8. pagination

type htPage struct {
	TotalCount int
	PageInfo   struct {
		HasNextPage, HasPreviousPage bool
		StartCursor, EndCursor       *string
	}
	Edges []struct {
		Cursor string
		Node   struct{ ID, Body string }
	}
}

func (p *htPage) ids() []string {
	var ids []string
	for _, e := range p.Edges {
		ids = append(ids, e.Node.ID)
	}
	return ids
}

func TestMessagePagination(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	total := 45
	all := htSendMany(t, s, alice, conv, "msg", total)

	const q = `query($c: ID!, $first: Int, $after: String, $last: Int, $before: String) {
		conversation(id: $c) { messages(first: $first, after: $after, last: $last, before: $before) {
			totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
			edges { cursor node { id body } } } } }`
	page := func(vars map[string]any) htPage {
		t.Helper()
		vars["c"] = conv
		var out struct{ Conversation struct{ Messages htPage } }
		htOK(t, htPost(t, s, bob.Token, q, vars), &out)
		p := out.Conversation.Messages
		if p.TotalCount != total {
			t.Fatalf("totalCount %d, want %d", p.TotalCount, total)
		}
		if n := len(p.Edges); n > 0 {
			if p.PageInfo.StartCursor == nil || *p.PageInfo.StartCursor != p.Edges[0].Cursor ||
				p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor != p.Edges[n-1].Cursor {
				t.Fatalf("start/end cursors do not match the edges: %+v", p.PageInfo)
			}
		} else if p.PageInfo.StartCursor != nil || p.PageInfo.EndCursor != nil {
			t.Fatalf("empty page with cursors: %+v", p.PageInfo)
		}
		return p
	}
	check := func(name string, p htPage, want []string, next, prev bool) {
		t.Helper()
		if !slices.Equal(p.ids(), want) {
			t.Fatalf("%s: got %d ids %v, want %d", name, len(p.Edges), p.ids(), len(want))
		}
		if p.PageInfo.HasNextPage != next || p.PageInfo.HasPreviousPage != prev {
			t.Fatalf("%s: hasNextPage %v hasPreviousPage %v, want %v %v", name, p.PageInfo.HasNextPage, p.PageInfo.HasPreviousPage, next, prev)
		}
	}

	// Forward: 20, 20, 5.
	p1 := page(map[string]any{"first": 20})
	check("first page", p1, all[:20], true, false)
	p2 := page(map[string]any{"first": 20, "after": *p1.PageInfo.EndCursor})
	check("second page", p2, all[20:40], true, true)
	p3 := page(map[string]any{"first": 20, "after": *p2.PageInfo.EndCursor})
	check("third page", p3, all[40:], false, true)
	if p3.Edges[4].Node.Body != "msg 44" {
		t.Fatalf("last body %q", p3.Edges[4].Node.Body)
	}
	p4 := page(map[string]any{"first": 20, "after": *p3.PageInfo.EndCursor})
	check("after the end", p4, nil, false, true)

	// Backward: newest 20 oldest first, then 20, then 5.
	b1 := page(map[string]any{"last": 20})
	check("last page", b1, all[25:], false, true)
	b2 := page(map[string]any{"last": 20, "before": *b1.PageInfo.StartCursor})
	check("second-to-last page", b2, all[5:25], true, true)
	b3 := page(map[string]any{"last": 20, "before": *b2.PageInfo.StartCursor})
	check("oldest page", b3, all[:5], true, false)

	// Cursors are stable: an edge's cursor works from any page.
	mid := page(map[string]any{"first": 3, "after": p1.Edges[9].Cursor})
	check("after the 10th", mid, all[10:13], true, true)
	midBack := page(map[string]any{"last": 3, "before": p1.Edges[9].Cursor})
	check("before the 10th", midBack, all[6:9], true, true)
	// Defaults and edge sizes.
	def := page(map[string]any{})
	if len(def.Edges) != 20 {
		t.Fatalf("default page size %d, want 20", len(def.Edges))
	}
	check("first 100", page(map[string]any{"first": 100}), all, false, false)
	check("last 100", page(map[string]any{"last": 100}), all, false, false)
	check("first 45", page(map[string]any{"first": 45}), all, false, false)
	zero := page(map[string]any{"first": 0})
	if len(zero.Edges) != 0 {
		t.Fatalf("first 0 returned %d edges", len(zero.Edges))
	}

	// Cursors survive edits and new messages (edits take sequence numbers
	// too, but a message keeps its place).
	htOK(t, htPost(t, s, alice.Token, `mutation($m: ID!) { editMessage(id: $m, body: "edited") { id } }`, map[string]any{"m": all[21]}), nil)
	extra := htSend(t, s, alice, conv, "late").ID
	all = append(all, extra)
	total++
	check("after edit", page(map[string]any{"first": 3, "after": *p1.PageInfo.EndCursor}), all[20:23], true, true)
	check("newest after edit", page(map[string]any{"last": 2}), all[44:], false, true)

	// Deleting keeps the tombstone in place.
	htOK(t, htPost(t, s, alice.Token, `mutation($m: ID!) { deleteMessage(id: $m) { id } }`, map[string]any{"m": all[3]}), nil)
	p1d := page(map[string]any{"first": 20})
	check("first page after delete", p1d, all[:20], true, false)
	check("all after delete", page(map[string]any{"first": 100}), all, false, false)
	if p1d.Edges[3].Node.Body != "" {
		t.Fatalf("tombstone body %q", p1d.Edges[3].Node.Body)
	}

	// Bad arguments: BAD_USER_INPUT.
	var convs struct {
		Conversations struct{ Edges []struct{ Cursor string } }
	}
	htOK(t, htPost(t, s, bob.Token, `{ conversations { edges { cursor } } }`, nil), &convs)
	convCursor := convs.Conversations.Edges[0].Cursor
	for name, vars := range map[string]map[string]any{
		"after abc":                  {"first": 5, "after": "abc"},
		"before abc":                 {"last": 5, "before": "abc"},
		"after junk base64":          {"first": 5, "after": base64.RawURLEncoding.EncodeToString([]byte("junk"))},
		"after std base64 junk":      {"first": 5, "after": base64.StdEncoding.EncodeToString([]byte("m:not-a-number"))},
		"after negative seq":         {"first": 5, "after": base64.RawURLEncoding.EncodeToString([]byte("m:-1"))},
		"conversation cursor after":  {"first": 5, "after": convCursor},
		"conversation cursor before": {"last": 5, "before": convCursor},
		"first 101":                  {"first": 101},
		"last 101":                   {"last": 101},
		"first -1":                   {"first": -1},
		"last -1":                    {"last": -1},
		"first and last":             {"first": 5, "last": 5},
	} {
		vars["c"] = conv
		r := htPost(t, s, bob.Token, q, vars)
		if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%s: want BAD_USER_INPUT, got %s", name, r.Raw)
		}
	}
}

func TestConversationPagination(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	const total = 25
	var m strings.Builder
	m.WriteString("mutation($b: ID!) {")
	for i := range total {
		fmt.Fprintf(&m, ` c%d: createConversation(input: {participantIds: [$b], title: "group %d"}) { id }`, i, i)
	}
	m.WriteString(" }")
	var created map[string]struct{ ID string }
	htOK(t, htPost(t, s, alice.Token, m.String(), map[string]any{"b": bob.ID}), &created)
	var want []string
	for i := range total {
		want = append(want, created[fmt.Sprintf("c%d", i)].ID)
	}
	// Activity in a few of them, so the order is not creation order.
	for _, i := range []int{3, 17, 0} {
		htSend(t, s, bob, want[i], "bump")
	}

	const q = `query($first: Int, $after: String) { conversations(first: $first, after: $after) {
		totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
		edges { cursor node { id updatedAt } } } }`
	type page struct {
		TotalCount int
		PageInfo   struct {
			HasNextPage, HasPreviousPage bool
			StartCursor, EndCursor       *string
		}
		Edges []struct {
			Cursor string
			Node   struct {
				ID        string
				UpdatedAt time.Time
			}
		}
	}
	var got []string
	var stamps []time.Time
	var after any
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("paging does not end")
		}
		var out struct{ Conversations page }
		htOK(t, htPost(t, s, alice.Token, q, map[string]any{"first": 10, "after": after}), &out)
		p := out.Conversations
		if p.TotalCount != total {
			t.Fatalf("totalCount %d, want %d", p.TotalCount, total)
		}
		if p.PageInfo.HasPreviousPage != (i > 0) {
			t.Fatalf("page %d: hasPreviousPage %v", i, p.PageInfo.HasPreviousPage)
		}
		for _, e := range p.Edges {
			got = append(got, e.Node.ID)
			stamps = append(stamps, e.Node.UpdatedAt)
		}
		if n := len(p.Edges); n > 0 && (*p.PageInfo.EndCursor != p.Edges[n-1].Cursor || *p.PageInfo.StartCursor != p.Edges[0].Cursor) {
			t.Fatalf("page %d: cursors do not match edges", i)
		}
		wantNext := len(got) < total
		if p.PageInfo.HasNextPage != wantNext {
			t.Fatalf("page %d (%d seen): hasNextPage %v", i, len(got), p.PageInfo.HasNextPage)
		}
		if !wantNext {
			break
		}
		after = *p.PageInfo.EndCursor
	}
	if len(got) != total {
		t.Fatalf("paged %d conversations, want %d: %v", len(got), total, got)
	}
	if !slices.Equal(htSorted(got...), htSorted(want...)) {
		t.Fatalf("duplicates or omissions: got %v", got)
	}
	for i := 1; i < len(stamps); i++ {
		if stamps[i].After(stamps[i-1]) {
			t.Fatalf("not newest first at %d: %v after %v", i, stamps[i], stamps[i-1])
		}
	}
	if got[0] != want[0] || got[1] != want[17] || got[2] != want[3] {
		t.Fatalf("recently active conversations not first: %v", got[:3])
	}
	// Bob takes part in all of them too.
	if n := htConvTotal(t, s, bob); n != total {
		t.Fatalf("bob totalCount %d", n)
	}
	// Bad arguments.
	var msgs struct {
		Conversation struct {
			Messages struct{ Edges []struct{ Cursor string } }
		}
	}
	htOK(t, htPost(t, s, alice.Token, `query($c: ID!) { conversation(id: $c) { messages { edges { cursor } } } }`, map[string]any{"c": want[0]}), &msgs)
	for name, vars := range map[string]map[string]any{
		"first 101":      {"first": 101},
		"first -1":       {"first": -1},
		"after abc":      {"after": "abc"},
		"after junk":     {"after": base64.RawURLEncoding.EncodeToString([]byte("c:x:"))},
		"message cursor": {"after": msgs.Conversation.Messages.Edges[0].Cursor},
	} {
		r := htPost(t, s, alice.Token, q, vars)
		if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%s: want BAD_USER_INPUT, got %s", name, r.Raw)
		}
	}
}

// ---------------------------------------------------------------------------
// 9. node

func TestNode(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, apptest.Ptr("node test"), bob)
	att := htUploadOK(t, s, alice, conv, htFile{Name: "note.txt", ContentType: "text/plain", Data: []byte("node attachment")})
	msg := htSendWith(t, s, alice, conv, "node body", att.ID)

	const q = `query($id: ID!) { node(id: $id) { __typename id
		... on User { username displayName }
		... on Conversation { title kind }
		... on Message { body sender { id } attachments { id } }
		... on Attachment { filename size url } } }`
	type node struct {
		Typename    string `json:"__typename"`
		ID          string
		Username    string
		Title       string
		Kind        string
		Body        string
		Sender      struct{ ID string }
		Attachments []struct{ ID string }
		Filename    string
		Size        int
		URL         string
	}
	get := func(u apptest.User, id string) *node {
		t.Helper()
		var out struct{ Node *node }
		htOK(t, htPost(t, s, u.Token, q, map[string]any{"id": id}), &out)
		return out.Node
	}
	if n := get(bob, alice.ID); n == nil || n.Typename != "User" || n.ID != alice.ID || n.Username != alice.Username {
		t.Fatalf("user node: %+v", n)
	}
	if n := get(bob, conv); n == nil || n.Typename != "Conversation" || n.ID != conv || n.Title != "node test" || n.Kind != "GROUP" {
		t.Fatalf("conversation node: %+v", n)
	}
	if n := get(bob, msg.ID); n == nil || n.Typename != "Message" || n.Body != "node body" || n.Sender.ID != alice.ID ||
		len(n.Attachments) != 1 || n.Attachments[0].ID != att.ID {
		t.Fatalf("message node: %+v", n)
	}
	if n := get(bob, att.ID); n == nil || n.Typename != "Attachment" || n.Filename != "note.txt" || n.Size != len("node attachment") || n.URL != att.URL {
		t.Fatalf("attachment node: %+v", n)
	}
	// IDs are globally unique: no two kinds share one.
	if ids := htSorted(alice.ID, bob.ID, conv, msg.ID, att.ID); len(slices.Compact(ids)) != 5 {
		t.Fatalf("IDs collide: %v", ids)
	}
	for _, id := range []string{"usr_doesnotexist000000", "cnv_doesnotexist000000", "msg_doesnotexist000000",
		"att_doesnotexist000000", "garbage", "", "usr_", strings.Repeat("x", 300)} {
		r := htPost(t, s, bob.Token, q, map[string]any{"id": id})
		var out struct{ Node *node }
		htOK(t, r, &out)
		if out.Node != nil {
			t.Errorf("node(%q) = %+v, want null", id, out.Node)
		}
	}
}

// ---------------------------------------------------------------------------
// 10. GET and automatic persisted queries

func TestGetQueriesAndPersistedQueries(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)

	// A query over GET, with variables and operationName.
	r := htGet(t, s, alice.Token, url.Values{
		"query":         {`query Me($c: ID!) { me { username } conversation(id: $c) { id } }`},
		"variables":     {fmt.Sprintf(`{"c":%q}`, conv)},
		"operationName": {"Me"},
	})
	var out struct {
		Me           struct{ Username string }
		Conversation *struct{ ID string }
	}
	htOK(t, r, &out)
	if out.Me.Username != alice.Username || out.Conversation == nil || out.Conversation.ID != conv {
		t.Fatalf("GET query: %s", r.Raw)
	}
	// GET needs the token as much as POST does.
	htErr(t, htGet(t, s, "", url.Values{"query": {`{ me { id } }`}}), "UNAUTHENTICATED")

	// A mutation over GET is rejected and has no effect.
	r = htGet(t, s, alice.Token, url.Values{"query": {fmt.Sprintf(`mutation { sendMessage(input: {conversationId: %q, body: "via GET"}) { id } }`, conv)}})
	if len(r.Errors) == 0 || r.Status < 400 || r.Status > 499 {
		t.Fatalf("mutation over GET: status %d %s", r.Status, r.Raw)
	}
	if len(r.Data) > 0 && string(r.Data) != "null" {
		t.Fatalf("mutation over GET returned data: %s", r.Raw)
	}
	if n := htMsgTotal(t, s, alice, conv); n != 0 {
		t.Fatalf("mutation over GET stored %d messages", n)
	}

	// Automatic persisted queries, the Apollo way.
	const query = `query PersistedMe { me { id username } }`
	sum := sha256.Sum256([]byte(query))
	hash := hex.EncodeToString(sum[:])
	ext := fmt.Sprintf(`{"persistedQuery":{"version":1,"sha256Hash":%q}}`, hash)
	postAPQ := func(withQuery bool) *htResp {
		t.Helper()
		body := map[string]any{"extensions": json.RawMessage(ext)}
		if withQuery {
			body["query"] = query
		}
		b, _ := json.Marshal(body)
		return htPostBody(t, s, alice.Token, "application/json", b)
	}
	// 1. Hash only, unknown: PERSISTED_QUERY_NOT_FOUND (GET and POST).
	r = htGet(t, s, alice.Token, url.Values{"extensions": {ext}})
	htErr(t, r, "PERSISTED_QUERY_NOT_FOUND")
	if r.Errors[0].Message != "PersistedQueryNotFound" {
		t.Errorf("Apollo clients look for the message PersistedQueryNotFound, got %q", r.Errors[0].Message)
	}
	htErr(t, postAPQ(false), "PERSISTED_QUERY_NOT_FOUND")
	// 2. Query and hash: runs and registers.
	var me struct{ Me struct{ ID, Username string } }
	htOK(t, postAPQ(true), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("APQ register: me = %+v", me.Me)
	}
	// 3. Hash only: runs, over GET and POST, for any viewer.
	me.Me.ID = ""
	htOK(t, htGet(t, s, alice.Token, url.Values{"extensions": {ext}}), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("APQ GET by hash: me = %+v", me.Me)
	}
	me.Me.ID = ""
	htOK(t, postAPQ(false), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("APQ POST by hash: me = %+v", me.Me)
	}
	me.Me.ID = ""
	htOK(t, htGet(t, s, bob.Token, url.Values{"extensions": {ext}}), &me)
	if me.Me.ID != bob.ID {
		t.Fatalf("APQ by hash for bob: me = %+v", me.Me)
	}
	// A persisted mutation stays a mutation: not runnable over GET by hash.
	mutation := fmt.Sprintf(`mutation PersistedSend { sendMessage(input: {conversationId: %q, body: "persisted"}) { id } }`, conv)
	msum := sha256.Sum256([]byte(mutation))
	mext := fmt.Sprintf(`{"persistedQuery":{"version":1,"sha256Hash":%q}}`, hex.EncodeToString(msum[:]))
	mb, _ := json.Marshal(map[string]any{"query": mutation, "extensions": json.RawMessage(mext)})
	htOK(t, htPostBody(t, s, alice.Token, "application/json", mb), nil)
	if n := htMsgTotal(t, s, alice, conv); n != 1 {
		t.Fatalf("persisted mutation: totalCount %d, want 1", n)
	}
	r = htGet(t, s, alice.Token, url.Values{"extensions": {mext}})
	if len(r.Errors) == 0 || (len(r.Data) > 0 && string(r.Data) != "null") {
		t.Fatalf("persisted mutation over GET: %s", r.Raw)
	}
	if n := htMsgTotal(t, s, alice, conv); n != 1 {
		t.Fatalf("persisted mutation ran over GET: totalCount %d, want 1", n)
	}

	// A query that does not match its hash is refused.
	b, _ := json.Marshal(map[string]any{"query": `{ me { username } }`, "extensions": json.RawMessage(ext)})
	r = htPostBody(t, s, alice.Token, "application/json", b)
	if len(r.Errors) == 0 || !slices.Contains(htAPICodes, r.Errors[0].Code()) || strings.Contains(string(r.Data), alice.Username) {
		t.Fatalf("mismatched APQ hash: %s", r.Raw)
	}
}

// ---------------------------------------------------------------------------
// 11. malformed requests

func TestBadRequests(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_REQUEST_BYTES=1024")
	alice := htUser(t, s, "alice")
	for _, c := range []struct {
		name, contentType string
		body              []byte
		code              string
	}{
		{"empty body", "application/json", nil, "BAD_USER_INPUT"},
		{"blank body", "application/json", []byte("  \n "), "BAD_USER_INPUT"},
		{"open brace", "application/json", []byte("{"), "BAD_USER_INPUT"},
		{"not JSON", "application/json", []byte("query { me { id } }"), "BAD_USER_INPUT"},
		{"truncated JSON", "application/json", []byte(`{"query": "{ me { id } }"`), "BAD_USER_INPUT"},
		{"JSON array of junk", "application/json", []byte(`[1, 2]`), "BAD_USER_INPUT"},
		{"variables not an object", "application/json", []byte(`{"query": "{ me { id } }", "variables": 5}`), "BAD_USER_INPUT"},
		{"too large", "application/json", []byte(`{"query": "{ me { id } }", "variables": {"pad": "` + strings.Repeat("x", 2000) + `"}}`), "BAD_USER_INPUT"},
		{"syntax error", "application/json", []byte(`{"query": "{ me { id "}`), "GRAPHQL_VALIDATION_FAILED"},
		{"garbage query", "application/json", []byte(`{"query": "hello there"}`), "GRAPHQL_VALIDATION_FAILED"},
		{"unknown field", "application/json", []byte(`{"query": "{ me { id password } }"}`), "GRAPHQL_VALIDATION_FAILED"},
		{"unknown root field", "application/json", []byte(`{"query": "{ everything }"}`), "GRAPHQL_VALIDATION_FAILED"},
		{"missing argument", "application/json", []byte(`{"query": "{ conversation { id } }"}`), "GRAPHQL_VALIDATION_FAILED"},
		{"wrong variable type", "application/json", []byte(`{"query": "query($f: Int) { users(first: $f) { id } }", "variables": {"f": "ten"}}`), "GRAPHQL_VALIDATION_FAILED"},
		{"no query", "application/json", []byte(`{}`), "GRAPHQL_VALIDATION_FAILED"},
	} {
		r := htPostBody(t, s, alice.Token, c.contentType, c.body)
		if r.Status < 400 || r.Status > 499 {
			t.Errorf("%s: status %d, want 4xx: %s", c.name, r.Status, r.Raw)
		}
		if len(r.Errors) == 0 || r.Errors[0].Code() != c.code || r.Errors[0].Message == "" {
			t.Errorf("%s: want %s, got %s", c.name, c.code, r.Raw)
		}
		if len(r.Data) > 0 && string(r.Data) != "null" {
			t.Errorf("%s: data in a failed request: %s", c.name, r.Raw)
		}
	}
	// The oversized body says why.
	r := htPostBody(t, s, alice.Token, "application/json", []byte(`{"query": "`+strings.Repeat(" ", 2000)+`{ me { id } }"}`))
	if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Errors[0].Message, "1024") {
		t.Errorf("oversized body: status %d %s", r.Status, r.Raw)
	}
	// A request just under the limit still works.
	var me struct{ Me struct{ ID string } }
	htOK(t, htPostBody(t, s, alice.Token, "application/json", []byte(`{"query": "`+strings.Repeat(" ", 900)+`{ me { id } }"}`)), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("request under the limit: %+v", me)
	}
}

// TestErrorsCarryAPICode checks API.md's rule that every error carries an
// extensions.code from its list, for requests gqlgen rejects itself.
func TestErrorsCarryAPICode(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_COMPLEXITY=5")
	alice := htUser(t, s, "alice")
	cases := []struct {
		name string
		r    *htResp
	}{
		{"mutation over GET", htGet(t, s, alice.Token, url.Values{"query": {`mutation { setTyping(conversationId: "cnv_x", typing: true) }`}})},
		{"complexity over the limit", htPost(t, s, alice.Token, `{ me { id username displayName avatarUrl } users { id username } }`, nil)},
		{"no Content-Type", htPostBody(t, s, alice.Token, "", []byte(`{"query": "{ me { id } }"}`))},
		{"multipart without map", htMultipartFields(t, s, alice.Token, "operations", `{"query": "mutation($f: Upload!) { uploadAttachment(conversationId: \"x\", file: $f) { id } }", "variables": {"f": null}}`)},
		{"multipart with bad operations", htMultipartFields(t, s, alice.Token, "operations", `{`, "map", `{}`)},
	}
	for _, c := range cases {
		if len(c.r.Errors) == 0 {
			t.Errorf("%s: no error: %s", c.name, c.r.Raw)
			continue
		}
		if code := c.r.Errors[0].Code(); !slices.Contains(htAPICodes, code) {
			t.Errorf("%s: extensions.code %q is not one of API.md's codes: %s", c.name, code, c.r.Raw)
		}
	}
	// Within the limit the same server answers.
	htOK(t, htPost(t, s, alice.Token, `{ me { id } }`, nil), nil)
}

// ---------------------------------------------------------------------------
// 12. health, readiness, metrics, GraphiQL

func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)

	status, _, _ := htFetch(t, s, "", "/healthz")
	if status != http.StatusOK {
		t.Fatalf("/healthz: %d", status)
	}
	status, h, body := htFetch(t, s, "", "/readyz")
	var ready struct {
		Status string
		Checks map[string]string
	}
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || json.Unmarshal(body, &ready) != nil {
		t.Fatalf("/readyz: %d %s %s", status, h.Get("Content-Type"), body)
	}
	if _, ok := ready.Checks["database"]; !ok || !strings.Contains(string(body), "database") {
		t.Fatalf("/readyz does not name the database: %s", body)
	}
	if ready.Checks["database"] != "ok" {
		t.Fatalf("/readyz database check: %s", body)
	}

	htPost(t, s, "", `{ __typename }`, nil) // some traffic
	status, h, body = htFetch(t, s, "", "/metrics")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", status, h.Get("Content-Type"))
	}
	for _, metric := range []string{"go_goroutines", "go_memstats_alloc_bytes"} {
		if !regexp.MustCompile(`(?m)^` + metric + `(\{[^}]*\})? [0-9.e+-]+$`).Match(body) {
			t.Errorf("/metrics has no sample of %s", metric)
		}
	}

	status, h, body = htFetch(t, s, "", "/")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", status, h.Get("Content-Type"))
	}
	page := string(body)
	if !strings.Contains(strings.ToLower(page), "<html") || !strings.Contains(page, "GraphiQL") {
		t.Fatalf("GET / is not the GraphiQL page: %.300s", page)
	}
	assets := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(assets) < 2 {
		t.Fatalf("GraphiQL page references %d assets", len(assets))
	}
	var sawJS, sawCSS bool
	for _, a := range assets {
		// identity: skip on-the-fly compression, slow under -race.
		req, _ := http.NewRequest(http.MethodGet, s.URL+a[1], nil)
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		status, h := resp.StatusCode, resp.Header
		ct := h.Get("Content-Type")
		if status != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: status %d, %d bytes", a[1], status, len(body))
		}
		switch {
		case strings.HasSuffix(a[1], ".js"):
			sawJS = true
			if !strings.Contains(ct, "javascript") {
				t.Errorf("%s: Content-Type %q", a[1], ct)
			}
		case strings.HasSuffix(a[1], ".css"):
			sawCSS = true
			if !strings.HasPrefix(ct, "text/css") {
				t.Errorf("%s: Content-Type %q", a[1], ct)
			}
		}
	}
	if !sawJS || !sawCSS {
		t.Errorf("page loads no script or no stylesheet from /assets: %v", assets)
	}
	// The page references nothing off-site (works with no internet).
	if regexp.MustCompile(`(?:src|href)="(?:https?:)?//`).MatchString(page) {
		t.Errorf("GraphiQL page loads assets from another origin")
	}
	if status, _, _ := htFetch(t, s, "", "/assets/does-not-exist.js"); status != http.StatusNotFound {
		t.Errorf("unknown asset: %d", status)
	}
}
