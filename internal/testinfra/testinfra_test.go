package testinfra

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestPostgresURLGivesSeparateDatabases(t *testing.T) {
	t.Parallel()
	a, b := PostgresURL(t), PostgresURL(t)
	if a == b {
		t.Fatalf("two calls returned the same database: %s", a)
	}
	ctx := context.Background()
	open := func(u string) *sql.DB {
		t.Helper()
		db, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 on %s: %d, %v", u, one, err)
		}
		return db
	}
	dbA, dbB := open(a), open(b)
	if _, err := dbA.ExecContext(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dbB.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a table of one database is visible in the other: %d, %v", n, err)
	}
	// The settings that make the server fast for tests are in effect.
	for name, want := range map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"} {
		var got string
		if err := dbA.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
}

// Each test's database is dropped when the test ends.
func TestPostgresDatabaseIsDroppedAfterTheTest(t *testing.T) {
	t.Parallel()
	var u string
	t.Run("inner", func(t *testing.T) { u = PostgresURL(t) })
	if t.Failed() || u == "" {
		return
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	name := parsed.Path[1:]
	parsed.Path = "/postgres"
	db, err := sql.Open("pgx", parsed.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestRedisStopAndStart(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	u, err := url.Parse(r.URL())
	if err != nil || u.Scheme != "redis" || u.Path != "/0" {
		t.Fatalf("URL() = %q (%v)", r.URL(), err)
	}
	addr := u.Host
	if err := ping(addr); err != nil {
		t.Fatalf("a started server does not answer PING: %v", err)
	}
	r.Stop(t)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts connections after Stop")
	}
	r.Start(t)
	if got := r.URL(); got != u.String() {
		t.Fatalf("URL changed across a restart: %s, then %s", u, got)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("a restarted server does not answer PING: %v", err)
	}
}

func TestRedisServersAreSeparate(t *testing.T) {
	t.Parallel()
	a, b := StartRedis(t), StartRedis(t)
	if a.URL() == b.URL() {
		t.Fatalf("two servers share %s", a.URL())
	}
}
