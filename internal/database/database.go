// Package database opens the configured database (SQLite by default,
// PostgreSQL for production) as an ent client and brings its schema up to date.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver (pure Go)

	"github.com/parley-chat/parley/ent"
)

// DB is an open database.
type DB struct {
	Client *ent.Client
	// Writer runs transactions: on a file-backed SQLite database a pool of
	// one connection of its own, elsewhere Client.
	Writer    *ent.Client
	writerSQL *sql.DB
	SQL       *sql.DB
	Dialect   string // ent's dialect name
	// Statements counts every SQL statement sent through this pool.
	Statements *Counter
}

// Options tune the connection pool.
type Options struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
	ConnMaxIdleTime time.Duration
}

// Open connects to url: "postgres://…" or "postgresql://…" selects
// PostgreSQL; anything else is a SQLite file path (optionally "sqlite://path"
// or "file:path"), whose directory is created.
func Open(ctx context.Context, url string, opt Options) (*DB, error) {
	if opt.MaxOpenConns <= 0 {
		opt.MaxOpenConns = 16
	}
	var (
		db  *sql.DB
		dia string
		err error
	)
	driverName, dsn := "pgx", url
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		dia = dialect.Postgres
	default:
		dia, driverName = dialect.SQLite, "sqlite"
		if dsn, err = sqliteDSN(url); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	// sql.Open only looks the driver up; the pool is built on a counting
	// connector around it.
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	conn, err := connector(probe.Driver(), dsn)
	_ = probe.Close()
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	counter := &Counter{}
	cc := countingConnector{Connector: conn, c: counter}
	if dia == dialect.SQLite {
		cc.writers = make(chan struct{}, 1) // one writer at a time: see countingConn.BeginTx
		cc.cache = true                     // see countingConn.cached; pgx keeps its own statement cache
	}
	db = sql.OpenDB(cc)
	db.SetMaxOpenConns(opt.MaxOpenConns)
	db.SetMaxIdleConns(min(max(opt.MaxIdleConns, 1), opt.MaxOpenConns))
	db.SetConnMaxLifetime(opt.ConnMaxLifetime)
	db.SetConnMaxIdleTime(opt.ConnMaxIdleTime)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dia, db)))
	out := &DB{Client: client, Writer: client, SQL: db, Dialect: dia, Statements: counter}
	if dia == dialect.SQLite && !strings.Contains(dsn, ":memory:") && !strings.Contains(dsn, "mode=memory") {
		// SQLite empties a connection's page cache whenever another
		// connection has written since its last transaction. With writes
		// spread over the pool, every transaction started cold, reading
		// its pages again with a system call each. One connection for
		// every transaction keeps the writer's cache warm; it shares the
		// write gate, so it still queues behind other transactions of the
		// pool, and waiting writers hold no pooled connection meanwhile.
		w := sql.OpenDB(cc)
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(opt.ConnMaxLifetime)
		if err := w.PingContext(pingCtx); err != nil {
			_ = w.Close()
			_ = db.Close()
			return nil, fmt.Errorf("connect to database: %w", err)
		}
		out.Writer, out.writerSQL = ent.NewClient(ent.Driver(entsql.OpenDB(dia, w))), w
	}
	return out, nil
}

// sqliteDSN turns a path into a DSN with the pragmas the service relies on:
// foreign keys, WAL (readers never wait for the writer), a busy timeout
// (writers queue instead of failing), and BEGIN IMMEDIATE, so a transaction
// takes the write lock up front instead of failing to upgrade later.
func sqliteDSN(url string) (string, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite://"), "file:")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return "", fmt.Errorf("database directory: %w", err)
		}
	}
	params := []string{
		"_pragma=foreign_keys(1)", "_pragma=journal_mode(WAL)", "_pragma=busy_timeout(10000)",
		"_pragma=synchronous(NORMAL)", "_txlock=immediate", "_time_format=sqlite",
	}
	if query != "" {
		params = append(params, query)
	}
	return "file:" + path + "?" + strings.Join(params, "&"), nil
}

// migrateMu serialises ent's schema diffing within a process: it writes
// package-level table definitions, which races when two diffs run at once
// (as parallel tests do).
var migrateMu sync.Mutex

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.SQL.PingContext(ctx) }

// Close closes the pools.
func (d *DB) Close() error {
	err := d.Client.Close()
	if d.writerSQL != nil {
		err = errors.Join(err, d.writerSQL.Close())
	}
	return err
}

// Rebind turns ? placeholders into PostgreSQL's $n ones when the dialect
// needs them, so hand-written SQL is written once for both databases.
func Rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
