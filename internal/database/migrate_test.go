package database

import (
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	entschema "entgo.io/ent/dialect/sql/schema"

	entmigrate "github.com/parley-chat/parley/ent/migrate"
	"github.com/parley-chat/parley/internal/testinfra"
)

func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }

// backend is a way to get a fresh, empty database of one dialect.
type backend struct {
	name    string
	dialect string
	url     func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", dialect.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "test.db") }},
	{"postgres", dialect.Postgres, func(t *testing.T) string { return testinfra.PostgresURL(t) }},
}

// forEach runs f as a parallel subtest per backend.
func forEach(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

func open(t *testing.T, url string, opt Options) *DB {
	t.Helper()
	db, err := Open(t.Context(), url, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func versions(t *testing.T, dir atlasmigrate.Dir) []string {
	t.Helper()
	files, err := dir.Files()
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, f := range files {
		vs = append(vs, f.Version())
	}
	return vs
}

func embeddedDir(t *testing.T, dia string) atlasmigrate.Dir {
	t.Helper()
	dir, err := MigrationDir(dia)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readRevisions(t *testing.T, db *DB) []*atlasmigrate.Revision {
	t.Helper()
	revs, err := (&revisions{q: db.SQL, dialect: db.Dialect}).ReadRevisions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return revs
}

func tableNames(t *testing.T, db *DB) []string {
	t.Helper()
	query := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
	if db.Dialect == dialect.Postgres {
		query = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
	}
	rows, err := db.SQL.QueryContext(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// entDiff returns the migration ent would plan from the live database to
// the ent schema: empty when ent considers the database up to date.
func entDiff(t *testing.T, db *DB) string {
	t.Helper()
	mem := &atlasmigrate.MemDir{}
	if err := atlasmigrate.WriteSumFile(mem, atlasmigrate.HashFile{}); err != nil {
		t.Fatal(err)
	}
	migrateMu.Lock()
	defer migrateMu.Unlock()
	m, err := entschema.NewMigrate(entsql.OpenDB(db.Dialect, db.SQL),
		entschema.WithDir(mem), entschema.WithMigrationMode(entschema.ModeInspect),
		entschema.WithDropColumn(true), entschema.WithDropIndex(true), entschema.WithErrNoPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	switch err := m.NamedDiff(t.Context(), "drift", entmigrate.Tables...); {
	case errors.Is(err, atlasmigrate.ErrNoPlan):
		return ""
	case err != nil:
		t.Fatal(err)
	}
	files, err := mem.Files()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		b.Write(f.Bytes())
	}
	return b.String()
}

// TestMigrate applies the migrations to an empty database: they give the
// schema ent expects, record every version, and applying again is a no-op.
func TestMigrate(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t), Options{})
		want := versions(t, embeddedDir(t, b.dialect))
		applied, err := db.ApplyMigrations(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(applied, want) {
			t.Fatalf("applied %v, want %v", applied, want)
		}
		if drift := entDiff(t, db); drift != "" {
			t.Fatalf("after the migrations, ent still plans:\n%s", drift)
		}
		revs := readRevisions(t, db)
		if len(revs) != len(want) {
			t.Fatalf("%d revisions, want %d", len(revs), len(want))
		}
		for i, r := range revs {
			if r.Version != want[i] || r.Type != atlasmigrate.RevisionTypeExecute || r.Applied != r.Total || r.Total == 0 ||
				r.Error != "" || r.Hash == "" || r.ExecutedAt.IsZero() {
				t.Errorf("revision %d: %+v", i, r)
			}
		}

		// Again: nothing to do, nothing written.
		for range 2 {
			applied, err = db.ApplyMigrations(t.Context(), nil)
			if err != nil || len(applied) != 0 {
				t.Fatalf("second apply: applied %v, err %v", applied, err)
			}
		}
		if again := readRevisions(t, db); len(again) != len(revs) || !again[0].ExecutedAt.Equal(revs[0].ExecutedAt) {
			t.Fatalf("revisions changed by a no-op apply: %+v", again)
		}

		// The schema works through ent.
		u, err := db.Client.User.Create().SetUsername("alice").SetDisplayName("Alice").SetPasswordHash("x").Save(t.Context())
		if err != nil || !strings.HasPrefix(u.ID, "usr_") {
			t.Fatalf("create a user: %v, %v", u, err)
		}
	})
}

// TestMigrateConcurrently starts several "replicas" on one database at once:
// each migration is applied exactly once and every caller succeeds.
func TestMigrateConcurrently(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		url := b.url(t)
		const replicas = 6
		dbs := make([]*DB, replicas)
		for i := range dbs {
			dbs[i] = open(t, url, Options{})
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total []string
			errs  []error
		)
		for _, db := range dbs {
			wg.Go(func() {
				applied, err := db.ApplyMigrations(t.Context(), nil)
				mu.Lock()
				defer mu.Unlock()
				total = append(total, applied...)
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if want := versions(t, embeddedDir(t, b.dialect)); !slices.Equal(total, want) {
			t.Fatalf("applied %v in all, want each of %v once", total, want)
		}
	})
}

// TestMigrateAdoptsAutoMigratedDatabase: a database made by ent's
// auto-migration (as before versioned migrations) keeps its data and gets
// the first migration as its baseline.
func TestMigrateAdoptsAutoMigratedDatabase(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t), Options{})
		// Builds before versioned migrations auto-migrated to the schema of
		// the first migration: make that schema without any revisions.
		files, err := embeddedDir(t, b.dialect).Files()
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range statementsOf(string(files[0].Bytes())) {
			if _, err := db.SQL.ExecContext(t.Context(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		if _, err := db.Client.User.Create().SetUsername("bob").SetDisplayName("Bob").SetPasswordHash("x").Save(t.Context()); err != nil {
			t.Fatal(err)
		}
		vs := versions(t, embeddedDir(t, b.dialect))
		applied, err := db.ApplyMigrations(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(applied, vs[1:]) {
			t.Fatalf("applied %v, want %v (all but the baseline)", applied, vs[1:])
		}
		revs := readRevisions(t, db)
		if len(revs) == 0 || revs[0].Version != vs[0] || revs[0].Type != atlasmigrate.RevisionTypeBaseline {
			t.Fatalf("revisions %+v, want a baseline at %s first", revs, vs[0])
		}
		if n := db.Client.User.Query().CountX(t.Context()); n != 1 {
			t.Fatalf("%d users after adoption, want 1", n)
		}
		if drift := entDiff(t, db); drift != "" {
			t.Fatalf("ent still plans:\n%s", drift)
		}
	})
}

// TestMigrateRefusesForeignDatabase: tables without a migration history that
// are not Parley's stop the migration instead of being built upon.
func TestMigrateRefusesForeignDatabase(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t), Options{})
		if _, err := db.SQL.ExecContext(t.Context(), "CREATE TABLE something_else (id integer PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		_, err := db.ApplyMigrations(t.Context(), nil)
		if err == nil || !strings.Contains(err.Error(), "something_else") {
			t.Fatalf("err = %v, want a refusal naming the table", err)
		}
		if got := tableNames(t, db); !slices.Equal(got, []string{"something_else"}) {
			t.Fatalf("tables %v after a refused migration", got)
		}
	})
}

// withFile returns a copy of dir with one more migration file (none if name
// is empty) and a recomputed atlas.sum.
func withFile(t *testing.T, dir atlasmigrate.Dir, name, content string) *atlasmigrate.MemDir {
	t.Helper()
	mem := &atlasmigrate.MemDir{}
	files, err := dir.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := mem.WriteFile(f.Name(), f.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if name != "" {
		if err := mem.WriteFile(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := mem.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	if err := atlasmigrate.WriteSumFile(mem, sum); err != nil {
		t.Fatal(err)
	}
	return mem
}

// TestMigrateFailureRollsBack: a failing migration leaves the schema and the
// history where they were, and SQLite's connection gets foreign keys back.
func TestMigrateFailureRollsBack(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t), Options{MaxOpenConns: 1})
		base := embeddedDir(t, b.dialect)
		if _, err := db.applyDir(t.Context(), nil, base); err != nil {
			t.Fatal(err)
		}
		before := tableNames(t, db)
		broken := withFile(t, base, "99990101000000_broken.sql",
			"CREATE TABLE half_done (id integer PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n")
		_, err := db.applyDir(t.Context(), nil, broken)
		if err == nil || !strings.Contains(err.Error(), "no_such_table") {
			t.Fatalf("err = %v, want the failing statement's error", err)
		}
		if after := tableNames(t, db); !slices.Equal(after, before) {
			t.Fatalf("tables %v after a failed migration, want %v", after, before)
		}
		if revs := readRevisions(t, db); len(revs) != len(versions(t, base)) {
			t.Fatalf("revisions after a failed migration: %+v", revs)
		}
		if b.dialect == dialect.SQLite {
			var fk bool
			if err := db.SQL.QueryRowContext(t.Context(), "PRAGMA foreign_keys").Scan(&fk); err != nil || !fk {
				t.Fatalf("foreign_keys = %v (%v) after a failed migration", fk, err)
			}
		}
		// Fixed, it applies.
		fixed := withFile(t, base, "99990101000000_fixed.sql", "CREATE TABLE half_done (id integer PRIMARY KEY);\n")
		applied, err := db.applyDir(t.Context(), nil, fixed)
		if err != nil || !slices.Equal(applied, []string{"99990101000000"}) {
			t.Fatalf("applied %v, err %v", applied, err)
		}
	})
}

// TestMigrationDirsIntact: each committed directory matches its atlas.sum,
// so an edited migration is caught here and refused at start-up.
func TestMigrationDirsIntact(t *testing.T) {
	for _, dia := range []string{dialect.SQLite, dialect.Postgres} {
		t.Run(dia, func(t *testing.T) {
			dir := embeddedDir(t, dia)
			if err := atlasmigrate.Validate(dir); err != nil {
				t.Fatalf("%v: run `go run ./cmd/migrations new <name>` instead of editing migrations by hand", err)
			}
			if len(versions(t, dir)) == 0 {
				t.Fatal("no migrations")
			}
			// The same directory with one file edited.
			files, _ := dir.Files()
			edited := &atlasmigrate.MemDir{}
			for _, f := range files {
				_ = edited.WriteFile(f.Name(), f.Bytes())
			}
			sum, err := fs.ReadFile(dir, atlasmigrate.HashFileName)
			if err != nil {
				t.Fatal(err)
			}
			_ = edited.WriteFile(atlasmigrate.HashFileName, sum)
			_ = edited.WriteFile(files[0].Name(), append(files[0].Bytes(), "-- edited\n"...))
			if err := atlasmigrate.Validate(edited); !errors.Is(err, atlasmigrate.ErrChecksumMismatch) {
				t.Fatalf("Validate(edited) = %v, want a checksum mismatch", err)
			}
			if dia == dialect.SQLite {
				db := open(t, filepath.Join(t.TempDir(), "t.db"), Options{})
				if _, err := db.applyDir(t.Context(), nil, edited); !errors.Is(err, atlasmigrate.ErrChecksumMismatch) {
					t.Fatalf("applying an edited directory: %v, want a checksum mismatch", err)
				}
			}
		})
	}
}

// TestMigrationsUpToDate: generating a migration from the ent schema now
// writes nothing, i.e. no change to ent/schema lacks its migration. On
// failure, run `go run ./cmd/migrations new <name>` and commit the files.
func TestMigrationsUpToDate(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		var dev *sql.DB
		if b.dialect == dialect.SQLite {
			var err error
			if dev, err = sql.Open("sqlite", "file:dev?mode=memory&_pragma=foreign_keys(1)"); err != nil {
				t.Fatal(err)
			}
			dev.SetMaxOpenConns(1) // one private in-memory database
			dev.SetConnMaxLifetime(0)
			t.Cleanup(func() { _ = dev.Close() })
		} else {
			dev = open(t, b.url(t), Options{}).SQL
		}
		dir := withFile(t, embeddedDir(t, b.dialect), "", "")
		before := versions(t, dir)
		wrote, err := Diff(t.Context(), b.dialect, dev, dir, atlasmigrate.NewVersion(), "check")
		if err != nil {
			t.Fatal(err)
		}
		if wrote {
			files, _ := dir.Files()
			last := files[len(files)-1]
			t.Fatalf("ent/schema has changes no migration covers (run `go run ./cmd/migrations new <name>`); the %s migration would be:\n%s",
				b.name, last.Bytes())
		}
		if after := versions(t, dir); !slices.Equal(after, before) {
			t.Fatalf("files changed: %v -> %v", before, after)
		}
	})
}

// TestDiffWritesNextMigration: the generator writes a new file (and sum)
// when the directory lags behind ent/schema — here, an empty directory.
func TestDiffWritesNextMigration(t *testing.T) {
	dev, err := sql.Open("sqlite", "file:dev?mode=memory&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	dev.SetMaxOpenConns(1)
	defer dev.Close()
	dir := &atlasmigrate.MemDir{}
	if err := atlasmigrate.WriteSumFile(dir, atlasmigrate.HashFile{}); err != nil {
		t.Fatal(err)
	}
	wrote, err := Diff(t.Context(), dialect.SQLite, dev, dir, "20200101000000", "initial")
	if err != nil || !wrote {
		t.Fatalf("wrote %v, err %v", wrote, err)
	}
	files, _ := dir.Files()
	if len(files) != 1 || files[0].Name() != "20200101000000_initial.sql" || !strings.Contains(string(files[0].Bytes()), "CREATE TABLE `users`") {
		t.Fatalf("files %v", files)
	}
	if err := atlasmigrate.Validate(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Diff(t.Context(), dialect.SQLite, dev, dir, "20200101000000", "again"); err == nil {
		t.Fatal("a version not after the last file was accepted")
	}
}

// statementsOf splits a migration file into its statements (one per line
// or ending at a line that ends with a semicolon; comments skipped).
func statementsOf(file string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(file, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") || strings.TrimSpace(line) == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	return out
}
