package plancheck

import (
	"reflect"
	"strings"
	"testing"
)

// A plan as PostgreSQL 15 writes it (abridged): the conversation list,
// walked newest first through an index, members checked through another.
const listPlan = `[
  {
    "Plan": {
      "Node Type": "Limit",
      "Plans": [
        {
          "Node Type": "Nested Loop",
          "Parent Relationship": "Outer",
          "Join Type": "Semi",
          "Plans": [
            {
              "Node Type": "Index Scan",
              "Parent Relationship": "Outer",
              "Scan Direction": "Backward",
              "Index Name": "conversation_updated_at_id",
              "Relation Name": "conversations",
              "Alias": "conversations"
            },
            {
              "Node Type": "Index Only Scan",
              "Parent Relationship": "Inner",
              "Scan Direction": "Forward",
              "Index Name": "participant_user_id_conversation_id",
              "Relation Name": "participants",
              "Alias": "t1",
              "Index Cond": "((user_id = 'usr_1'::text) AND (conversation_id = conversations.id))"
            }
          ]
        }
      ]
    }
  }
]`

const statsPlan = `[{"Plan": {"Node Type": "Aggregate", "Plans": [
  {"Node Type": "Hash Join", "Plans": [
    {"Node Type": "Seq Scan", "Relation Name": "messages", "Alias": "m", "Filter": "((deleted_at IS NULL) AND (sender_id <> 'usr_1'::text))"},
    {"Node Type": "Hash", "Plans": [
      {"Node Type": "Bitmap Heap Scan", "Relation Name": "participants", "Alias": "p", "Recheck Cond": "(user_id = 'usr_1'::text)", "Plans": [
        {"Node Type": "Bitmap Index Scan", "Index Name": "participant_user_id_conversation_id", "Index Cond": "(user_id = 'usr_1'::text)"}]}]}]},
  {"Node Type": "Seq Scan", "Relation Name": "users", "Alias": "users"}]}}]`

func TestPostgresProblems(t *testing.T) {
	root, err := ParsePostgres([]byte(listPlan))
	if err != nil {
		t.Fatal(err)
	}
	seq, full := PostgresProblems(root, "messages", "participants", "conversations")
	if len(seq) != 0 {
		t.Errorf("seq scans: %v", seq)
	}
	if len(full) != 1 || full[0].Table != "conversations" || !strings.Contains(full[0].Step, "Index Scan Backward using conversation_updated_at_id") {
		t.Errorf("full index scans: %v", full)
	}
	want := "Limit (Nested Loop (Index Scan Backward conversation_updated_at_id on conversations (no index cond), " +
		"Index Only Scan participant_user_id_conversation_id on participants))"
	if got := Summary(root); got != want {
		t.Errorf("summary:\n got %s\nwant %s", got, want)
	}
	if got := Indexes(root); !reflect.DeepEqual(got, []string{"conversation_updated_at_id", "participant_user_id_conversation_id"}) {
		t.Errorf("indexes: %v", got)
	}

	root, err = ParsePostgres([]byte(statsPlan))
	if err != nil {
		t.Fatal(err)
	}
	seq, full = PostgresProblems(root, "messages", "participants", "conversations")
	if len(seq) != 1 || seq[0].Table != "messages" || len(full) != 0 {
		t.Fatalf("seq %v, full %v", seq, full)
	}
	if !strings.Contains(seq[0].String(), "seq scan of messages: Seq Scan on messages m [filter ((deleted_at IS NULL)") {
		t.Errorf("problem: %s", seq[0])
	}
	// users is not among the tables checked.
	if seq, _ := PostgresProblems(root, "users"); len(seq) != 1 || seq[0].Table != "users" {
		t.Errorf("users: %v", seq)
	}
}

func TestParsePostgresRejects(t *testing.T) {
	for _, in := range []string{``, `{}`, `[]`, `[{"Plan": null}]`, `[{"Plan": {}}, {"Plan": {}}]`} {
		if _, err := ParsePostgres([]byte(in)); err == nil {
			t.Errorf("%q: want an error", in)
		}
	}
}

func TestSQLiteProblems(t *testing.T) {
	q := `SELECT m.id FROM messages m JOIN users AS u ON u.id = m.sender_id
JOIN "participants" p ON p.conversation_id = m.conversation_id WHERE m.conversation_id IN (SELECT "conversations"."id" FROM "conversations" WHERE x)`
	details := []string{
		"SEARCH m USING INDEX message_conversation_id_seq (conversation_id=?)",
		"SEARCH u USING INDEX sqlite_autoindex_users_1 (id=?)",
		"SCAN p",
		"LIST SUBQUERY 1",
		"SCAN conversations USING COVERING INDEX conversation_updated_at_id",
		"SCAN u",
		"SEARCH p USING AUTOMATIC COVERING INDEX (conversation_id=?)",
		"USE TEMP B-TREE FOR ORDER BY",
	}
	seq, full := SQLiteProblems(q, details, "messages", "participants", "conversations")
	if len(seq) != 2 || seq[0].Step != "SCAN p" || seq[0].Table != "participants" || seq[1].Kind != "seq scan (automatic index)" {
		t.Errorf("seq: %v", seq)
	}
	if len(full) != 1 || full[0].Table != "conversations" {
		t.Errorf("full: %v", full)
	}
}

func TestSQLAliases(t *testing.T) {
	got := SQLAliases(`SELECT * FROM "messages" WHERE x IN (SELECT y FROM participants AS t1 JOIN users u ON true) ORDER BY 1`)
	want := map[string]string{"messages": "messages", "participants": "participants", "t1": "participants", "users": "users", "u": "users"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = SQLAliases("SELECT `t1`.`id` FROM `messages` AS `t1` WHERE x")
	if !reflect.DeepEqual(got, map[string]string{"messages": "messages", "t1": "messages"}) {
		t.Errorf("backquotes: %v", got)
	}
	got = SQLAliases(`UPDATE "participants" SET "last_read_seq" = ? WHERE x`)
	if !reflect.DeepEqual(got, map[string]string{"participants": "participants"}) {
		t.Errorf("update: %v", got)
	}
}
