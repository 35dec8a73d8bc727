// Package schema holds the ent data model: the only hand-written files under ent/.
package schema

import (
	"time"

	"github.com/rs/xid"
)

// Every row exposed through the API gets a string ID with a type prefix, so
// the GraphQL ID is the primary key itself: node(id:) can dispatch on the
// prefix and no translation layer between database and API IDs is needed.
// xid values are time-ordered and 20 characters long.
const (
	PrefixUser         = "usr_"
	PrefixConversation = "cnv_"
	PrefixMessage      = "msg_"
	PrefixAttachment   = "att_"
)

func newID(prefix string) func() string {
	return func() string { return prefix + xid.New().String() }
}

// nowUTC keeps every stored time in UTC, so that times stored as text (SQLite)
// order the same way as the instants they stand for, and at PostgreSQL's
// microsecond precision, so a time returned equals the time read back.
func nowUTC() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
