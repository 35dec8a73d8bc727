package e2e

// Automatic persisted queries shared through Redis: a query registered on
// one replica runs by hash on another. Only queries that pass validation
// and every limit are persisted. (The APQ handshake on one replica is
// TestGetQueriesAndPersistedQueries.)

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/apptest"
)

func apqExt(query string) (hash, ext string) {
	sum := sha256.Sum256([]byte(query))
	hash = hex.EncodeToString(sum[:])
	return hash, fmt.Sprintf(`{"persistedQuery":{"version":1,"sha256Hash":%q}}`, hash)
}

func apqPost(t *testing.T, s *apptest.Server, token, query, ext string) *htResp {
	t.Helper()
	body := map[string]any{"extensions": json.RawMessage(ext)}
	if query != "" {
		body["query"] = query
	}
	b, _ := json.Marshal(body)
	return htPostBody(t, s, token, "application/json", b)
}

func TestPersistedQueriesSharedThroughRedis(t *testing.T) {
	t.Parallel()
	a, b, rds := replicaPair(t, "APQ_TTL=1h", "MAX_DEPTH=4")
	alice := htUser(t, a, "alice")
	rdb := redis.NewClient(mustParseRedis(t, rds.URL()))
	t.Cleanup(func() { rdb.Close() })

	query := `query SharedMe { me { id username } }`
	hash, ext := apqExt(query)
	// Unknown on both replicas.
	htErr(t, htGet(t, b, alice.Token, url.Values{"extensions": {ext}}), "PERSISTED_QUERY_NOT_FOUND")
	// Registered through A…
	var me struct{ Me struct{ ID, Username string } }
	htOK(t, apqPost(t, a, alice.Token, query, ext), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("register: %+v", me)
	}
	// …it is in Redis under the prefix, for APQ_TTL…
	key := "parley:apq:" + hash
	if got, err := rdb.Get(t.Context(), key).Result(); err != nil || got != query {
		t.Fatalf("redis %s = %q, %v", key, got, err)
	}
	if ttl := rdb.TTL(t.Context(), key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %v, want about APQ_TTL=1h", ttl)
	}
	// …and runs by hash alone on B, over GET and POST.
	me.Me.ID = ""
	htOK(t, htGet(t, b, alice.Token, url.Values{"extensions": {ext}}), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("B by hash (GET): %+v", me)
	}
	me.Me.ID = ""
	htOK(t, apqPost(t, b, alice.Token, "", ext), &me)
	if me.Me.ID != alice.ID {
		t.Fatalf("B by hash (POST): %+v", me)
	}

	// A query refused by validation, or by a limit, is not persisted (it
	// cannot fill Redis), though its hash matched.
	for _, bad := range []string{
		`query Bad { me { id password } }`,
		`query Deep { conversations { edges { node { lastMessage { conversation { id } } } } } }`,
	} {
		h, e := apqExt(bad)
		r := apqPost(t, a, alice.Token, bad, e)
		htErr(t, r, "GRAPHQL_VALIDATION_FAILED")
		htErr(t, apqPost(t, b, alice.Token, "", e), "PERSISTED_QUERY_NOT_FOUND")
		if n := rdb.Exists(t.Context(), "parley:apq:"+h).Val(); n != 0 {
			t.Errorf("refused query persisted in Redis: %s", bad)
		}
	}
	// A hash that does not match its query stores nothing.
	other := `query Other { me { username } }`
	h2, _ := apqExt(other)
	r := apqPost(t, a, alice.Token, other, ext)
	if len(r.Errors) == 0 {
		t.Fatalf("mismatched hash accepted: %s", r.Raw)
	}
	if got := rdb.Get(t.Context(), key).Val(); got != query {
		t.Fatalf("mismatched hash overwrote %s: %q", key, got)
	}
	if rdb.Exists(t.Context(), "parley:apq:"+h2).Val() != 0 {
		t.Fatal("mismatched query stored under its own hash")
	}

	// With Redis down, APQ degrades to a miss (clients send the query in
	// full), never to an error of another kind.
	rds.Stop(t)
	query3 := `query WhileDown { me { id } }`
	_, ext3 := apqExt(query3)
	htOK(t, apqPost(t, a, alice.Token, query3, ext3), nil)
	htOK(t, apqPost(t, a, alice.Token, "", ext3), nil) // A's own LRU
	htErr(t, apqPost(t, b, alice.Token, "", ext3), "PERSISTED_QUERY_NOT_FOUND")
	htOK(t, apqPost(t, b, alice.Token, "", ext), nil) // B had fetched it before
}
