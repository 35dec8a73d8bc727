package chat

import (
	"strings"
	"unicode/utf8"
)

// storable reports whether s can be stored in, or compared with, a text
// column of every supported database. PostgreSQL rejects NUL characters and
// invalid UTF-8 in text parameters (the whole statement fails), where SQLite
// takes them. Nothing stored contains them, so an ID, cursor, name or search
// argument that is not storable matches nothing and must not reach a query.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

func allStorable(ss []string) bool {
	for _, s := range ss {
		if !storable(s) {
			return false
		}
	}
	return true
}
