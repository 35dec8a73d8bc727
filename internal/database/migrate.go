package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"text/template"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/sqlite"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	entschema "entgo.io/ent/dialect/sql/schema"

	entmigrate "github.com/parley-chat/parley/ent/migrate"
	"github.com/parley-chat/parley/migrations"
)

// RevisionsTable records the applied migrations, one row per version, in the
// layout of the Atlas CLI's revisions table.
const RevisionsTable = "atlas_schema_revisions"

// PostgresMigrateLockKey is the pg_advisory_lock key held while migrating, so
// replicas starting together apply each migration once.
const PostgresMigrateLockKey int64 = 0x7061726c6579 // "parley"

// legacyTables are the tables of the first migration. A database holding
// them but no revisions was created by ent's auto-migration, before
// migrations were versioned: it is adopted with the first migration as its
// baseline instead of being refused as not empty.
var legacyTables = []string{"attachments", "conversations", "message_events", "messages", "participants", "users"}

// Migrate brings the schema up to date: it applies the embedded migrations
// for the database's dialect that it has not applied yet, logging them
// through slog's default logger. See ApplyMigrations.
func (d *DB) Migrate(ctx context.Context) error {
	_, err := d.ApplyMigrations(ctx, slog.Default())
	return err
}

// ApplyMigrations applies the pending migrations of the embedded directory
// for the database's dialect and returns their versions (none when the
// schema is up to date). All pending files run in one transaction: the
// schema moves to the newest version or stays where it was. On PostgreSQL a
// session advisory lock (PostgresMigrateLockKey) is held meanwhile; on
// SQLite the transaction's write lock plays that part. So concurrent callers,
// in this process or in other replicas, wait for each other, and the later
// ones find nothing to do.
func (d *DB) ApplyMigrations(ctx context.Context, log *slog.Logger) ([]string, error) {
	dir, err := MigrationDir(d.Dialect)
	if err != nil {
		return nil, err
	}
	return d.applyDir(ctx, log, dir)
}

// MigrationDir returns the embedded migration directory of an ent dialect.
func MigrationDir(dia string) (atlasmigrate.Dir, error) {
	var src fs.FS
	switch dia {
	case dialect.SQLite:
		src = migrations.SQLite
	case dialect.Postgres:
		src = migrations.Postgres
	default:
		return nil, fmt.Errorf("migrate: no migrations for dialect %q", dia)
	}
	return memDir(src)
}

// memDir copies the top-level files of src into an Atlas directory.
func memDir(src fs.FS) (atlasmigrate.Dir, error) {
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate: read migration directory: %w", err)
	}
	dir := &atlasmigrate.MemDir{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(src, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: read migration directory: %w", err)
		}
		if err := dir.WriteFile(e.Name(), b); err != nil {
			return nil, err
		}
	}
	return dir, nil
}

// applyDir applies dir's pending files on one connection, in one
// transaction, under the dialect's lock.
func (d *DB) applyDir(ctx context.Context, log *slog.Logger, dir atlasmigrate.Dir) (applied []string, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := d.SQL.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	// Clean-up runs even when ctx is cancelled: a pooled connection must not
	// keep the lock, or SQLite's foreign keys switched off.
	cleanCtx := context.WithoutCancel(ctx)
	var (
		tx       *sql.Tx
		commit   func() error
		rollback func() error
	)
	switch d.Dialect {
	case dialect.Postgres:
		unlock, err := lockPostgres(ctx, conn, log)
		if err != nil {
			return nil, err
		}
		defer func() {
			if uerr := unlock(cleanCtx); uerr != nil {
				discard(conn)
				log.Error("release the migration lock", "err", uerr)
			}
		}()
		if tx, err = conn.BeginTx(ctx, nil); err != nil {
			return nil, fmt.Errorf("migrate: begin: %w", err)
		}
		commit, rollback = tx.Commit, tx.Rollback
	case dialect.SQLite:
		// As Atlas does: foreign keys off for the transaction (so that a
		// table rebuild's DROP TABLE does not cascade), back on afterwards,
		// and the commit refused if it added foreign key violations. The
		// pragma cannot change inside a transaction.
		var fk bool
		if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		if fk {
			if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = off"); err != nil {
				return nil, fmt.Errorf("migrate: %w", err)
			}
			defer func() {
				var on bool
				if conn.QueryRowContext(cleanCtx, "PRAGMA foreign_keys").Scan(&on) != nil || !on {
					discard(conn)
				}
			}()
		}
		// The DSN's _txlock=immediate takes the write lock now, so a second
		// process waits here (busy_timeout) instead of reading stale revisions.
		if tx, err = conn.BeginTx(ctx, nil); err != nil {
			_, _ = conn.ExecContext(cleanCtx, "PRAGMA foreign_keys = on")
			return nil, fmt.Errorf("migrate: begin: %w", err)
		}
		if commit, err = sqlite.CommitFunc(cleanCtx, conn, tx, fk); err != nil {
			_ = sqlite.RollbackFunc(cleanCtx, conn, tx, fk)()
			return nil, fmt.Errorf("migrate: %w", err)
		}
		rollback = sqlite.RollbackFunc(cleanCtx, conn, tx, fk)
	default:
		return nil, fmt.Errorf("migrate: unsupported dialect %q", d.Dialect)
	}
	applied, baseline, current, err := d.execute(ctx, tx, dir)
	if err != nil {
		if rerr := rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return nil, err
	}
	if err := commit(); err != nil {
		return nil, fmt.Errorf("migrate: commit: %w", err)
	}
	if baseline != "" {
		log.Warn("adopted a database created before versioned migrations; its schema is taken as the baseline",
			"baseline", baseline, "table", RevisionsTable)
	}
	if len(applied) > 0 {
		log.Info("applied schema migrations", "versions", applied, "schema_version", current, "dialect", d.Dialect)
	} else {
		log.Info("no schema migrations to apply", "schema_version", current, "dialect", d.Dialect)
	}
	return applied, nil
}

// execute runs the executor inside tx. It returns the versions applied, the
// baseline version if it adopted a legacy database, and the version the
// schema is at afterwards.
func (d *DB) execute(ctx context.Context, tx *sql.Tx, dir atlasmigrate.Dir) (applied []string, baseline, current string, err error) {
	var drv atlasmigrate.Driver
	if d.Dialect == dialect.Postgres {
		drv, err = postgres.Open(tx)
	} else {
		drv, err = sqlite.Open(tx)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("migrate: %w", err)
	}
	rrw := &revisions{q: tx, dialect: d.Dialect}
	if err := rrw.create(ctx); err != nil {
		return nil, "", "", err
	}
	revs, err := rrw.ReadRevisions(ctx)
	if err != nil {
		return nil, "", "", err
	}
	rec := &recorder{}
	opts := []atlasmigrate.ExecutorOption{atlasmigrate.WithLogger(rec), atlasmigrate.WithOperatorVersion("parley")}
	if len(revs) == 0 {
		// Atlas would check that the whole server (every schema) is empty;
		// only the connected schema matters here.
		s, err := drv.InspectSchema(ctx, "", nil)
		if err != nil {
			return nil, "", "", fmt.Errorf("migrate: inspect schema: %w", err)
		}
		var names []string
		for _, t := range s.Tables {
			if t.Name != RevisionsTable {
				names = append(names, t.Name)
			}
		}
		switch {
		case len(names) == 0:
			opts = append(opts, atlasmigrate.WithAllowDirty(true))
		case containsAll(names, legacyTables):
			files, err := dir.Files()
			if err != nil || len(files) == 0 {
				return nil, "", "", fmt.Errorf("migrate: no migration files to take as baseline (%v)", err)
			}
			baseline = files[0].Version()
			opts = append(opts, atlasmigrate.WithBaselineVersion(baseline))
		default:
			return nil, "", "", fmt.Errorf("migrate: the database has tables (%s) but no %s table: not a Parley database, or one from before versioned migrations with an unexpected schema", strings.Join(names, ", "), RevisionsTable)
		}
	}
	ex, err := atlasmigrate.NewExecutor(drv, dir, rrw, opts...)
	if err != nil {
		return nil, "", "", fmt.Errorf("migrate: %w", err)
	}
	if err := ex.ExecuteN(ctx, 0); err != nil && !errors.Is(err, atlasmigrate.ErrNoPendingFiles) {
		// A failed statement aborts a PostgreSQL transaction, so the
		// executor's attempt to record the failure fails too: report the
		// statement's error alone.
		var serr *atlasmigrate.StmtExecError
		if errors.As(err, &serr) {
			err = serr
		}
		return nil, "", "", fmt.Errorf("migrate: %w", err)
	}
	if revs, err = rrw.ReadRevisions(ctx); err != nil {
		return nil, "", "", err
	}
	if len(revs) > 0 {
		current = revs[len(revs)-1].Version
	}
	return rec.versions, baseline, current, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// lockPostgres takes the session advisory lock on conn, logging when it has
// to wait for another replica.
func lockPostgres(ctx context.Context, conn *sql.Conn, log *slog.Logger) (unlock func(context.Context) error, err error) {
	var got bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", PostgresMigrateLockKey).Scan(&got); err != nil {
		return nil, fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	if !got {
		log.Info("waiting for another process to finish migrating", "lock", PostgresMigrateLockKey)
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", PostgresMigrateLockKey); err != nil {
			return nil, fmt.Errorf("migrate: take the migration lock: %w", err)
		}
	}
	return func(ctx context.Context) error {
		var released bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", PostgresMigrateLockKey).Scan(&released); err != nil {
			return err
		}
		if !released {
			return errors.New("the lock was not held")
		}
		return nil
	}, nil
}

// discard closes conn's underlying connection instead of returning it to
// the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// recorder is an Atlas logger that keeps the versions of the files executed.
type recorder struct{ versions []string }

func (r *recorder) Log(e atlasmigrate.LogEntry) {
	if f, ok := e.(atlasmigrate.LogFile); ok && f.File != nil {
		r.versions = append(r.versions, f.File.Version())
	}
}

// revisions is Atlas's RevisionReadWriter over RevisionsTable in the
// connected schema, in the Atlas CLI's layout (so `atlas migrate status`
// can read it given the schema).
type revisions struct {
	q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	}
	dialect string
}

var _ atlasmigrate.RevisionReadWriter = (*revisions)(nil)

const revisionColumns = "version, description, type, applied, total, executed_at, execution_time, error, error_stmt, hash, partial_hashes, operator_version"

func (r *revisions) create(ctx context.Context) error {
	ddl := "CREATE TABLE IF NOT EXISTS " + RevisionsTable + ` (
	version varchar NOT NULL PRIMARY KEY,
	description varchar NOT NULL,
	type bigint NOT NULL DEFAULT 2,
	applied bigint NOT NULL DEFAULT 0,
	total bigint NOT NULL DEFAULT 0,
	executed_at timestamptz NOT NULL,
	execution_time bigint NOT NULL,
	error text NULL,
	error_stmt text NULL,
	hash varchar NOT NULL,
	partial_hashes jsonb NULL,
	operator_version varchar NOT NULL
)`
	if r.dialect == dialect.SQLite {
		ddl = strings.NewReplacer("varchar", "text", "bigint", "integer", "timestamptz", "datetime", "jsonb", "json").Replace(ddl)
	}
	if _, err := r.q.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("migrate: create %s: %w", RevisionsTable, err)
	}
	return nil
}

// Ident implements atlasmigrate.RevisionReadWriter.
func (r *revisions) Ident() *atlasmigrate.TableIdent {
	return &atlasmigrate.TableIdent{Name: RevisionsTable}
}

// ReadRevisions implements atlasmigrate.RevisionReadWriter.
func (r *revisions) ReadRevisions(ctx context.Context) ([]*atlasmigrate.Revision, error) {
	return r.read(ctx, "")
}

// ReadRevision implements atlasmigrate.RevisionReadWriter.
func (r *revisions) ReadRevision(ctx context.Context, version string) (*atlasmigrate.Revision, error) {
	revs, err := r.read(ctx, version)
	if err != nil {
		return nil, err
	}
	if len(revs) == 0 {
		return nil, atlasmigrate.ErrRevisionNotExist
	}
	return revs[0], nil
}

func (r *revisions) read(ctx context.Context, version string) ([]*atlasmigrate.Revision, error) {
	query, args := "SELECT "+revisionColumns+" FROM "+RevisionsTable, []any{}
	if version != "" {
		query += " WHERE version = " + r.placeholder(1)
		args = append(args, version)
	}
	rows, err := r.q.QueryContext(ctx, query+" ORDER BY version", args...)
	if err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", RevisionsTable, err)
	}
	defer rows.Close()
	var revs []*atlasmigrate.Revision
	for rows.Next() {
		var (
			rev               atlasmigrate.Revision
			typ               int64
			execNanos         int64
			errText, errStmt  sql.NullString
			partial           []byte
			executedAt        any
			applied, total    int64
			operator, hash    string
			vers, description string
		)
		if err := rows.Scan(&vers, &description, &typ, &applied, &total, &executedAt, &execNanos,
			&errText, &errStmt, &hash, &partial, &operator); err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", RevisionsTable, err)
		}
		rev.Version, rev.Description, rev.Type = vers, description, atlasmigrate.RevisionType(typ)
		rev.Applied, rev.Total = int(applied), int(total)
		rev.ExecutionTime = time.Duration(execNanos)
		rev.Error, rev.ErrorStmt, rev.Hash, rev.OperatorVersion = errText.String, errStmt.String, hash, operator
		if t, ok := executedAt.(time.Time); ok {
			rev.ExecutedAt = t
		}
		if len(partial) > 0 {
			if err := json.Unmarshal(partial, &rev.PartialHashes); err != nil {
				return nil, fmt.Errorf("migrate: %s.partial_hashes of %s: %w", RevisionsTable, vers, err)
			}
		}
		revs = append(revs, &rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read %s: %w", RevisionsTable, err)
	}
	return revs, nil
}

// WriteRevision implements atlasmigrate.RevisionReadWriter.
func (r *revisions) WriteRevision(ctx context.Context, rev *atlasmigrate.Revision) error {
	var partial any // NULL unless some statements of a file are applied
	if len(rev.PartialHashes) > 0 {
		b, err := json.Marshal(rev.PartialHashes)
		if err != nil {
			return err
		}
		partial = string(b)
	}
	ph := make([]string, 12)
	for i := range ph {
		ph[i] = r.placeholder(i + 1)
	}
	query := "INSERT INTO " + RevisionsTable + " (" + revisionColumns + ") VALUES (" + strings.Join(ph, ", ") + ")" +
		" ON CONFLICT (version) DO UPDATE SET description = excluded.description, type = excluded.type," +
		" applied = excluded.applied, total = excluded.total, executed_at = excluded.executed_at," +
		" execution_time = excluded.execution_time, error = excluded.error, error_stmt = excluded.error_stmt," +
		" hash = excluded.hash, partial_hashes = excluded.partial_hashes, operator_version = excluded.operator_version"
	_, err := r.q.ExecContext(ctx, query,
		rev.Version, rev.Description, int64(rev.Type), rev.Applied, rev.Total, rev.ExecutedAt.UTC(),
		int64(rev.ExecutionTime), nullString(rev.Error), nullString(rev.ErrorStmt), rev.Hash, partial, rev.OperatorVersion)
	if err != nil {
		return fmt.Errorf("migrate: write %s: %w", RevisionsTable, err)
	}
	return nil
}

// DeleteRevision implements atlasmigrate.RevisionReadWriter.
func (r *revisions) DeleteRevision(ctx context.Context, version string) error {
	if _, err := r.q.ExecContext(ctx, "DELETE FROM "+RevisionsTable+" WHERE version = "+r.placeholder(1), version); err != nil {
		return fmt.Errorf("migrate: delete from %s: %w", RevisionsTable, err)
	}
	return nil
}

func (r *revisions) placeholder(i int) string {
	if r.dialect == dialect.Postgres {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// Diff writes into dir the migration that takes the schema dir builds to the
// one the ent schema describes, as <version>_<name>.sql, and updates its
// atlas.sum. It reports whether there was anything to write. dev must be an
// empty database of the ent dialect dia: the directory is replayed on it,
// inspected and dropped again. version must sort after every file in dir
// (use atlasmigrate.NewVersion()); callers writing one migration per dialect
// pass the same version to each.
//
// Dropped columns and indexes are included: a migration file is reviewed
// before it is committed.
func Diff(ctx context.Context, dia string, dev *sql.DB, dir atlasmigrate.Dir, version, name string) (bool, error) {
	if err := atlasmigrate.CheckVersion(version); err != nil {
		return false, err
	}
	files, err := dir.Files()
	if err != nil {
		return false, err
	}
	if n := len(files); n > 0 && files[n-1].Version() >= version {
		return false, fmt.Errorf("version %s does not sort after the last migration, %s", version, files[n-1].Name())
	}
	if name != path.Base(name) || strings.ContainsAny(name, " \t\n.") {
		return false, fmt.Errorf("invalid migration name %q", name)
	}
	// Fix the version, so that each dialect's file of one change has the same.
	nameTpl, err := template.New("name").Parse(version + "{{ with .Name }}_{{ . }}{{ end }}.sql")
	if err != nil {
		return false, err
	}
	formatter, err := atlasmigrate.NewTemplateFormatter(nameTpl, atlasmigrate.DefaultFormatter[0].C)
	if err != nil {
		return false, err
	}
	// ent writes its package-level table definitions while diffing.
	migrateMu.Lock()
	defer migrateMu.Unlock()
	m, err := entschema.NewMigrate(entsql.OpenDB(dia, dev),
		entschema.WithDir(dir),
		entschema.WithFormatter(formatter),
		entschema.WithMigrationMode(entschema.ModeReplay),
		entschema.WithDropColumn(true),
		entschema.WithDropIndex(true),
		entschema.WithErrNoPlan(true),
	)
	if err != nil {
		return false, err
	}
	switch err := m.NamedDiff(ctx, name, entmigrate.Tables...); {
	case errors.Is(err, atlasmigrate.ErrNoPlan):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}
