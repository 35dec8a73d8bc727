// Command migrations writes versioned schema migrations from the ent schema.
//
//	go run ./cmd/migrations new <name>   write migrations/{sqlite,postgres}/<version>_<name>.sql
//	go run ./cmd/migrations check        fail if ent/schema has changes no migration covers
//
// Run it from the module root after changing ent/schema (and running go
// generate). For each dialect it replays the committed migration directory
// on an empty development database, diffs the result against the ent schema
// and writes the difference as the next migration, with one version shared
// by both dialects, and updates atlas.sum. Review the files, then commit them.
//
// SQLite's development database is in memory. PostgreSQL's is the empty
// database at --postgres-dev-url (or $MIGRATIONS_PG_DEV_URL); without one, a
// throwaway server is started from the local PostgreSQL installation
// (initdb and postgres, as the postgres user when run as root) and removed
// afterwards.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"
	_ "modernc.org/sqlite"             // "sqlite"

	"github.com/parley-chat/parley/internal/database"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrations:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  go run ./cmd/migrations new [flags] <name>   write the next migration for each dialect
  go run ./cmd/migrations check [flags]        fail if a new migration would be written
  go run ./cmd/migrations hash [flags]         rewrite atlas.sum after editing a migration
                                               that is not released yet (say, to add a backfill)

flags:
`

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_]*$`)

func run(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("migrations", flag.ContinueOnError)
	dir := fset.String("dir", "migrations", "the migrations directory, holding sqlite/ and postgres/")
	dialects := fset.String("dialects", "sqlite,postgres", "the dialects to write migrations for")
	pgURL := fset.String("postgres-dev-url", os.Getenv("MIGRATIONS_PG_DEV_URL"),
		"an empty PostgreSQL database to plan on (default $MIGRATIONS_PG_DEV_URL; none: start a throwaway server)")
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), usage)
		fset.PrintDefaults()
	}
	if len(args) == 0 {
		fset.Usage()
		return errors.New("no command")
	}
	cmd := args[0]
	// Flags may come before or after the name.
	if err := fset.Parse(args[1:]); err != nil {
		return err
	}
	rest := fset.Args()
	var name string
	if cmd == "new" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
		if err := fset.Parse(rest); err != nil {
			return err
		}
		rest = fset.Args()
	}
	switch {
	case cmd == "hash" && len(rest) == 0:
		return rehash(*dir, *dialects)
	case cmd != "new" && cmd != "check":
		fset.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	case len(rest) > 0:
		return fmt.Errorf("unexpected arguments %q", rest)
	case cmd == "new" && !validName.MatchString(name):
		return fmt.Errorf("want a name of lower-case letters, digits and underscores, like add_user_bio; got %q", name)
	}
	var want []string
	for _, d := range strings.Split(*dialects, ",") {
		switch d = strings.TrimSpace(d); d {
		case "sqlite":
			want = append(want, dialect.SQLite)
		case "postgres":
			want = append(want, dialect.Postgres)
		default:
			return fmt.Errorf("unknown dialect %q (want sqlite or postgres)", d)
		}
	}
	version := atlasmigrate.NewVersion()
	var pending []string
	for _, dia := range want {
		sub := filepath.Join(*dir, subdir(dia))
		local, err := atlasmigrate.NewLocalDir(sub)
		if err != nil {
			return fmt.Errorf("%s: %w (run from the module root, or pass --dir)", sub, err)
		}
		var target atlasmigrate.Dir = local
		if cmd == "check" {
			// Plan into a copy, leaving the directory as it is.
			mem := &atlasmigrate.MemDir{}
			if err := copyDir(local, mem); err != nil {
				return err
			}
			target = mem
		}
		dev, cleanup, err := devDB(ctx, dia, *pgURL)
		if err != nil {
			return fmt.Errorf("%s development database: %w", dia, err)
		}
		planName := name
		if cmd == "check" {
			planName = "check"
		}
		wrote, err := database.Diff(ctx, dia, dev, target, version, planName)
		cleanup()
		if err != nil {
			return fmt.Errorf("%s: %w", sub, err)
		}
		switch {
		case wrote && cmd == "new":
			fmt.Printf("wrote %s\n", filepath.Join(sub, version+"_"+name+".sql"))
		case wrote:
			pending = append(pending, sub)
		case cmd == "new":
			fmt.Printf("%s: up to date, nothing to write\n", sub)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("ent/schema has changes that no migration in %s covers: run `go run ./cmd/migrations new <name>`", strings.Join(pending, " and "))
	}
	if cmd == "check" {
		fmt.Println("migrations are up to date with ent/schema")
	}
	return nil
}

func subdir(dia string) string {
	if dia == dialect.Postgres {
		return "postgres"
	}
	return "sqlite"
}

func copyDir(from atlasmigrate.Dir, to atlasmigrate.Dir) error {
	files, err := from.Files()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := to.WriteFile(f.Name(), f.Bytes()); err != nil {
			return err
		}
	}
	sum, err := fs.ReadFile(from, atlasmigrate.HashFileName)
	if err != nil {
		return err
	}
	return to.WriteFile(atlasmigrate.HashFileName, sum)
}

// devDB opens an empty database of the dialect to plan on.
func devDB(ctx context.Context, dia, pgURL string) (*sql.DB, func(), error) {
	if dia == dialect.SQLite {
		// A private in-memory database per connection: keep exactly one.
		db, err := sql.Open("sqlite", "file:dev?mode=memory&_pragma=foreign_keys(1)")
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		return db, func() { _ = db.Close() }, nil
	}
	stopServer := func() {}
	if pgURL == "" {
		fmt.Println("no --postgres-dev-url: starting a throwaway PostgreSQL server")
		var err error
		if pgURL, stopServer, err = startPostgres(ctx); err != nil {
			return nil, nil, fmt.Errorf("%w (or pass --postgres-dev-url / MIGRATIONS_PG_DEV_URL)", err)
		}
	}
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		stopServer()
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		stopServer()
		return nil, nil, err
	}
	return db, func() { _ = db.Close(); stopServer() }, nil
}

// rehash rewrites each dialect's atlas.sum from its files.
func rehash(dir, dialects string) error {
	for _, d := range strings.Split(dialects, ",") {
		sub := filepath.Join(dir, strings.TrimSpace(d))
		local, err := atlasmigrate.NewLocalDir(sub)
		if err != nil {
			return fmt.Errorf("%s: %w", sub, err)
		}
		sum, err := local.Checksum()
		if err != nil {
			return fmt.Errorf("%s: %w", sub, err)
		}
		if err := atlasmigrate.WriteSumFile(local, sum); err != nil {
			return fmt.Errorf("%s: %w", sub, err)
		}
		fmt.Printf("rewrote %s\n", filepath.Join(sub, atlasmigrate.HashFileName))
	}
	return nil
}
