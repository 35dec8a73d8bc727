package e2e

// The operation limits besides depth and complexity (limits_test.go):
// tokens, expanded fields, aliases, validation errors, batching,
// introspection, and subscriptions over one-shot transports. Helpers of
// this file and hostile_test.go are prefixed with "hs".

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

// hsReason asserts a document-level refusal: GRAPHQL_VALIDATION_FAILED
// with extensions.reason, a message, and no data.
func hsReason(t testing.TB, r *htResp, reason string) {
	t.Helper()
	if len(r.Errors) == 0 || r.Errors[0].Code() != "GRAPHQL_VALIDATION_FAILED" || r.Errors[0].Extensions["reason"] != reason {
		t.Fatalf("want GRAPHQL_VALIDATION_FAILED/%s, got status %d %.400s", reason, r.Status, r.Raw)
	}
	if r.Errors[0].Message == "" || (len(r.Data) > 0 && string(r.Data) != "null") {
		t.Fatalf("refusal without a message, or with data: %.400s", r.Raw)
	}
}

// hsAliases is a selection of n aliased copies of field.
func hsAliases(n int, field string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d: %s", i, field)
	}
	return b.String()
}

// hsFragmentBomb is a document of n fragments, each spreading the previous
// one twice: about 2^n fields once expanded, in a few hundred bytes.
func hsFragmentBomb(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "query { me { ...F%d } } fragment F1 on User { id username }", n)
	for i := 2; i <= n; i++ {
		fmt.Fprintf(&b, " fragment F%d on User { ...F%d ...F%d }", i, i-1, i-1)
	}
	return b.String()
}

func TestTokenFieldAndAliasLimits(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_TOKENS=400", "MAX_FIELDS=60", "MAX_ALIASES=5")
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)

	// Tokens: counted while parsing, whatever the document means.
	r := htPost(t, s, alice.Token, "{"+strings.Repeat(" __typename", 401)+" }", nil)
	hsReason(t, r, "TOKEN_LIMIT_EXCEEDED")
	if !strings.Contains(r.Errors[0].Message, "400") {
		t.Errorf("token error does not name the limit: %q", r.Errors[0].Message)
	}
	htOK(t, htPost(t, s, alice.Token, "{"+strings.Repeat(" __typename", 50)+" }", nil), nil)

	// Fields: a fragment bomb is refused at once, before validation, depth
	// and complexity walk its billion fields.
	start := time.Now()
	r = htPost(t, s, alice.Token, hsFragmentBomb(30), nil)
	hsReason(t, r, "FIELD_LIMIT_EXCEEDED")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fragment bomb took %v", d)
	}
	// An unused fragment counts as well (validation walks it too).
	hsReason(t, htPost(t, s, alice.Token, "{ me { id } } "+strings.TrimPrefix(hsFragmentBomb(10), "query { me { ...F10 } }"), nil), "FIELD_LIMIT_EXCEEDED")
	hsReason(t, htPost(t, s, alice.Token, "{"+strings.Repeat(" me { id }", 31)+" }", nil), "FIELD_LIMIT_EXCEEDED")
	htOK(t, htPost(t, s, alice.Token, "{"+strings.Repeat(" me { id }", 30)+" }", nil), nil)

	// Aliases: counted through fragments, at every spread.
	r = htPost(t, s, alice.Token, "{"+hsAliases(6, "me { id }")+" }", nil)
	hsReason(t, r, "ALIAS_LIMIT_EXCEEDED")
	if !strings.Contains(r.Errors[0].Message, "5") {
		t.Errorf("alias error does not name the limit: %q", r.Errors[0].Message)
	}
	htOK(t, htPost(t, s, alice.Token, "{"+hsAliases(5, "me { id }")+" }", nil), nil)
	const frag = ` fragment A on User { a: id b: username c: displayName }`
	hsReason(t, htPost(t, s, alice.Token, `query { me { ...A } x: me { ...A } }`+frag, nil), "ALIAS_LIMIT_EXCEEDED")
	htOK(t, htPost(t, s, alice.Token, `query { me { ...A } }`+frag, nil), nil)
	// An alias equal to the field's name is no alias.
	htOK(t, htPost(t, s, alice.Token, "{ me { id: id username: username displayName: displayName avatarUrl: avatarUrl } id2: me { id } }", nil), nil)

	// An aliased mutation over the limit writes nothing.
	var m strings.Builder
	m.WriteString("mutation($c: ID!) {")
	for i := range 6 {
		fmt.Fprintf(&m, ` s%d: sendMessage(input: {conversationId: $c, body: "bomb %d"}) { id }`, i, i)
	}
	m.WriteString(" }")
	hsReason(t, htPost(t, s, alice.Token, m.String(), map[string]any{"c": conv}), "ALIAS_LIMIT_EXCEEDED")
	if n := htMsgTotal(t, s, alice, conv); n != 0 {
		t.Fatalf("refused mutation stored %d messages", n)
	}
}

// Validation errors are capped: same-named fields with different arguments
// conflict pairwise (n² errors), and the answer stays small and fast.
func TestValidationErrorsCapped(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice := htUser(t, s, "alice")
	start := time.Now()
	r := htPost(t, s, alice.Token, "{"+strings.Repeat(" users(first: 1) { id } users(first: 2) { id }", 250)+" }", nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("conflicting fields took %v", d)
	}
	if len(r.Errors) == 0 || len(r.Errors) > 51 || r.Errors[0].Code() != "GRAPHQL_VALIDATION_FAILED" {
		t.Fatalf("%d errors, first %+v", len(r.Errors), r.Errors[:min(1, len(r.Errors))])
	}
	if last := r.Errors[len(r.Errors)-1].Message; !strings.Contains(last, "too many validation errors") {
		t.Errorf("last error does not say the list was cut: %q", last)
	}
	if len(r.Raw) > 64<<10 {
		t.Errorf("response of %d bytes", len(r.Raw))
	}
	htOK(t, htPost(t, s, alice.Token, `{ me { id } }`, nil), nil)
}

// A JSON array of operations (batching) is refused as a whole: the batch
// cap is 1, and nothing in the batch runs.
func TestBatchingRefused(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	sendJSON, _ := json.Marshal(map[string]any{"query": fmt.Sprintf(`mutation { sendMessage(input: {conversationId: %q, body: "batched"}) { id } }`, conv)})
	send := string(sendJSON)
	for _, body := range []string{
		`[{"query": "{ me { id } }"}]`,
		" \n[" + send + ", " + send + "]",
		`[]`,
	} {
		r := htPostBody(t, s, alice.Token, "application/json", []byte(body))
		if r.Status != http.StatusBadRequest || len(r.Errors) != 1 || r.Errors[0].Code() != "BAD_USER_INPUT" ||
			!strings.Contains(r.Errors[0].Message, "batch") {
			t.Fatalf("batch %.60s: status %d %s", body, r.Status, r.Raw)
		}
	}
	if n := htMsgTotal(t, s, alice, conv); n != 0 {
		t.Fatalf("a refused batch stored %d messages", n)
	}
}

func TestIntrospectionSwitch(t *testing.T) {
	t.Parallel()
	on := apptest.Start(t)
	off := apptest.Start(t, "INTROSPECTION=false")
	const schemaQ = `{ __schema { queryType { name } } }`
	htOK(t, htPost(t, on, "", schemaQ, nil), nil)
	for _, q := range []string{
		schemaQ,
		`{ __type(name: "User") { name fields { name } } }`,
		`query { ...Q } fragment Q on Query { __schema { types { name } } }`,
		`query { ... on Query { __type(name: "Message") { name } } }`,
	} {
		r := htPost(t, off, "", q, nil)
		hsReason(t, r, "INTROSPECTION_DISABLED")
		if !strings.Contains(r.Errors[0].Message, "introspection") {
			t.Errorf("%s: message %q", q, r.Errors[0].Message)
		}
	}
	// GET too, and __typename still answers.
	hsReason(t, htGet(t, off, "", map[string][]string{"query": {schemaQ}}), "INTROSPECTION_DISABLED")
	var tn struct {
		Typename string `json:"__typename"`
	}
	htOK(t, htPost(t, off, "", `{ __typename }`, nil), &tn)
	if tn.Typename != "Query" {
		t.Fatalf("__typename = %q", tn.Typename)
	}
	// No "did you mean" hints that would describe the schema.
	alice := htUser(t, off, "alice")
	r := htPost(t, off, alice.Token, `{ me { usernam } }`, nil)
	htErr(t, r, "GRAPHQL_VALIDATION_FAILED")
	if strings.Contains(r.Errors[0].Message, "Did you mean") {
		t.Errorf("suggestion with introspection off: %q", r.Errors[0].Message)
	}
	r = htPost(t, on, alice.Token, `{ me { usernam } }`, nil)
	if len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, "Did you mean") {
		t.Errorf("suggestion expected with introspection on: %s", r.Raw)
	}
	// Over WebSocket as well.
	c := off.ConnectAs(alice)
	c.Subscribe("i", schemaQ, nil)
	m := c.MustOp("i", 5*time.Second)
	if errs := m.Errors(); len(errs) == 0 || errs[0].Extensions["reason"] != "INTROSPECTION_DISABLED" {
		t.Fatalf("introspection over WebSocket: %s %s", m.Type, m.Payload)
	}
}

// A subscription sent as a plain POST (no WebSocket, no Accept:
// text/event-stream) is refused at once instead of hanging until the first
// event.
func TestSubscriptionOverPlainPOSTRefused(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	start := time.Now()
	r := htPost(t, s, alice.Token, `subscription($c: ID!) { messageEvents(conversationId: $c) { type } }`, map[string]any{"c": conv})
	htErr(t, r, "BAD_USER_INPUT")
	if !strings.Contains(r.Errors[0].Message, "text/event-stream") || time.Since(start) > 5*time.Second {
		t.Fatalf("after %v: %s", time.Since(start), r.Raw)
	}
	r = htPost(t, s, alice.Token, `subscription { inbox { type } }`, nil)
	htErr(t, r, "BAD_USER_INPUT")
}
