// Package migrations embeds the versioned schema migrations: one Atlas
// migration directory per database dialect, each with its atlas.sum.
//
// The files are written by `go run ./cmd/migrations new <name>` from the
// ent schema (ent/schema) and applied by database.Migrate; never edit one
// that has been released, add a new one instead.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed sqlite/*.sql sqlite/atlas.sum postgres/*.sql postgres/atlas.sum
var files embed.FS

// The migration directories, rooted at the directory itself.
var (
	SQLite   fs.FS = sub("sqlite")
	Postgres fs.FS = sub("postgres")
)

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // only on a malformed name, which is a constant above
	}
	return f
}
