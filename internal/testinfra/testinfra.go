// Package testinfra starts the external servers some tests need — a
// PostgreSQL server and Redis servers — as child processes of the test
// binary, from the Debian packages installed on the machine (postgresql,
// redis-server).
//
// Why not mocks or a shared service: the code under test talks SQL and the
// Redis protocol, and the bugs worth catching (placeholder syntax, type and
// collation differences, error classification, pub/sub reconnects) only show
// against the real servers. Why not Docker: CI and developer machines run the
// suite without it. Each test process starts at most one PostgreSQL server,
// lazily, and gives every caller a database of its own, so parallel tests
// never see each other's rows; each StartRedis call gets a server of its own,
// so a test can stop and restart it to simulate an outage.
//
// Servers run with durability off (fsync, synchronous commits and full-page
// writes disabled for PostgreSQL; no RDB or AOF for Redis): a crash loses
// nothing a test needs. Their output goes to a log file in their temp dir,
// whose tail is part of any start-up error. They die with the test process
// (parent-death signal), and Run removes PostgreSQL's data directory.
//
// When a binary is missing, tests that need it are skipped, except under
// CI=true, where a skip would hide a broken setup and so fails the test.
//
// PostgreSQL refuses to run as root; as root, its processes run as the
// "postgres" system user, which owns the temp dir.
package testinfra

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

// Run runs the tests of m, then stops the PostgreSQL server this process
// started (if any) and removes its data directory. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }
func Run(m *testing.M) int {
	code := m.Run()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.srv != nil {
		pg.srv.stop()
		pg.srv = nil
	}
	return code
}

// unavailable reports a missing prerequisite: a skip on a developer
// machine, a failure in CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: refusing to skip)", msg)
	}
	t.Skip(msg)
}

// ---------------------------------------------------------------------------
// processes

// process is a server running as a child of the test process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// startProcess starts cmd so that it dies with the test process. The
// parent-death signal is tied to the OS thread that forked the child, so
// that thread stays locked to a goroutine for as long as the child lives
// (Go may otherwise retire the thread and kill the child early).
func startProcess(cmd *exec.Cmd, deathSig syscall.Signal) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSig
	cmd.SysProcAttr.Setpgid = true // a ^C to the test is not the server's
	p := &process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, and SIGKILL if the process is still running after grace.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// runAs makes cmd run under cred (the postgres user when the tests run as
// root; nil changes nothing).
func runAs(cmd *exec.Cmd, cred *syscall.Credential) {
	if cred == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = cred
}

// logTail returns the last lines of a log file, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "--- " + path + " (tail)\n" + strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// refuses reports whether nothing accepts connections on addr.
func refuses(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// ---------------------------------------------------------------------------
// PostgreSQL

var pg struct {
	mu  sync.Mutex
	srv *pgServer
	err error // a start-up failure, repeated to every later caller
	seq atomic.Int64
}

type pgServer struct {
	dir   string // temp dir: data/, sock/, postgres.log
	port  int
	proc  *process
	admin *sql.DB // to the "postgres" database, for CREATE/DROP DATABASE
	log   string
	// create serialises CREATE DATABASE: concurrent copies of one template
	// can fail with "source database is being accessed by other users".
	create sync.Mutex
}

// postgresBinDir finds the directory of initdb and postgres: the newest
// Debian /usr/lib/postgresql/N/bin, else the directory of initdb on PATH.
func postgresBinDir() (string, error) {
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		sort.Slice(dirs, func(i, j int) bool {
			vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
			vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
			return vi > vj
		})
		for _, d := range dirs {
			if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
				return d, nil
			}
		}
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("initdb not found in /usr/lib/postgresql/*/bin or on PATH")
	}
	if resolved, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = resolved
	}
	d := filepath.Dir(initdb)
	if !isExecutable(filepath.Join(d, "postgres")) {
		return "", fmt.Errorf("no postgres binary next to %s", initdb)
	}
	return d, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// postgresCredential returns the identity PostgreSQL must run under: nil
// (the current user) unless the tests run as root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root, but there is no postgres user to run it as: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// PostgresURL returns the URL of a new, empty database on this process's
// PostgreSQL server, which it starts on first use. The database is dropped
// when t ends. Safe for concurrent use.
func PostgresURL(t testing.TB) string {
	t.Helper()
	bin, err := postgresBinDir()
	if err != nil {
		unavailable(t, "PostgreSQL not installed (apt-get install postgresql): %v", err)
	}
	pg.mu.Lock()
	if pg.srv == nil && pg.err == nil {
		pg.srv, pg.err = startPostgres(bin)
	}
	srv, serr := pg.srv, pg.err
	pg.mu.Unlock()
	if serr != nil {
		t.Fatalf("start PostgreSQL: %v", serr)
	}
	name := fmt.Sprintf("t_%d", pg.seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv.create.Lock()
	_, err = srv.admin.ExecContext(ctx, "CREATE DATABASE "+name)
	srv.create.Unlock()
	if err != nil {
		t.Fatalf("create database %s: %v\n%s", name, err, logTail(srv.log))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", srv.port, name)
}

// startPostgres runs initdb in a fresh temp dir and starts the server on a
// free loopback port, retrying with another port if that one was taken in
// the meantime.
func startPostgres(bin string) (_ *pgServer, err error) {
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", pgDirPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	// The postgres user must reach the dir: every parent must be
	// searchable by others (the usual /tmp is).
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the children hold their own descriptors

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale="+pgLocale(), "--no-sync", "--no-instructions")
	initdb.Stdout, initdb.Stderr = logFile, logFile
	initdb.Env = pgEnv()
	initdb.Dir = dir
	runAs(initdb, cred)
	if err := initdb.Run(); err != nil {
		hint := ""
		if cred != nil {
			hint = fmt.Sprintf(" (running as root: initdb runs as the postgres user, which must be able to reach %s)", dir)
		}
		return nil, fmt.Errorf("initdb: %w%s\n%s", err, hint, logTail(logPath))
	}

	maxConns := max(300, 40*runtime.NumCPU())
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
			"-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories="+sock,
			"-c", "max_connections="+strconv.Itoa(maxConns),
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "shared_buffers=64MB",
			"-c", "log_min_messages=warning",
			"-c", "logging_collector=off",
		)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.Env = pgEnv()
		cmd.Dir = dir
		runAs(cmd, cred)
		// SIGQUIT is PostgreSQL's immediate shutdown.
		proc, err := startProcess(cmd, syscall.SIGQUIT)
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		srv := &pgServer{dir: dir, port: port, proc: proc, log: logPath}
		if lastErr = srv.waitReady(); lastErr == nil {
			return srv, nil
		}
		proc.stop(syscall.SIGQUIT, 5*time.Second)
		if srv.admin != nil {
			_ = srv.admin.Close()
		}
	}
	return nil, fmt.Errorf("%w\n%s", lastErr, logTail(logPath))
}

// pgDirPrefix names the temp dirs of PostgreSQL servers started here.
const pgDirPrefix = "parley-pg-"

// sweepStale removes the temp dirs of servers whose test process was killed
// (a -timeout panic or a SIGKILL skips Run's clean-up; the server itself dies
// with the process): no running postmaster, and old enough not to be in the
// middle of initdb.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgDirPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < 5*time.Minute {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid > 0 {
				if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
					continue // still running
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// pgLocale is C.UTF-8 where the C library has it (case-insensitive matching
// then folds non-ASCII letters too, as production locales do), else C.
func pgLocale() string {
	out, err := exec.Command("locale", "-a").Output()
	if err == nil {
		for _, l := range strings.Fields(string(out)) {
			if strings.EqualFold(l, "C.UTF-8") || strings.EqualFold(l, "C.utf8") {
				return "C.UTF-8"
			}
		}
	}
	return "C"
}

// pgEnv is the environment of PostgreSQL's processes: the test's, without
// anything that would point them elsewhere.
func pgEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=")
	})
	return append(env, "LC_ALL=C")
}

// waitReady waits until the server accepts SQL on its TCP port.
func (s *pgServer) waitReady() error {
	db, err := sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port))
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(4)
	s.admin = db
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return s.checkIdentity()
		}
		if s.proc.exited() {
			return fmt.Errorf("postgres exited during start-up (%v)", s.proc.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within %s: %w", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkIdentity makes sure the server answering on the port is ours, not
// another test process's that took the port first (ours then fails to bind).
func (s *pgServer) checkIdentity() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var dir string
	if err := s.admin.QueryRowContext(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return fmt.Errorf("ask the server for its data directory: %w", err)
	}
	if want := filepath.Join(s.dir, "data"); dir != want {
		return fmt.Errorf("port %d is served by another PostgreSQL (data directory %s, not %s)", s.port, dir, want)
	}
	return nil
}

// stop shuts the server down at once and removes its files.
func (s *pgServer) stop() {
	_ = s.admin.Close()
	s.proc.stop(syscall.SIGQUIT, 10*time.Second)
	_ = os.RemoveAll(s.dir)
}

// ---------------------------------------------------------------------------
// Redis

// Redis is a redis-server started for one test. Stop and Start simulate an
// outage: the server comes back on the same address, empty.
type Redis struct {
	mu   sync.Mutex
	bin  string
	dir  string
	port int
	log  string
	proc *process
}

// StartRedis starts a fresh redis-server on a free loopback port, without
// persistence; it is stopped when t ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "Redis not installed (apt-get install redis-server): %v", err)
	}
	r := &Redis{bin: bin, dir: t.TempDir()}
	r.log = filepath.Join(r.dir, "redis.log")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if r.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if lastErr = r.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start redis-server: %v\n%s", lastErr, logTail(r.log))
	}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.proc != nil {
			r.proc.stop(syscall.SIGKILL, time.Second)
			r.proc = nil
		}
	})
	return r
}

// URL is the server's redis:// URL (database 0).
func (r *Redis) URL() string { return fmt.Sprintf("redis://%s/0", r.addr()) }

func (r *Redis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Stop kills the server and returns once its port refuses connections.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	r.proc.stop(syscall.SIGKILL, time.Second)
	r.proc = nil
	deadline := time.Now().Add(10 * time.Second)
	for !refuses(r.addr()) {
		if time.Now().After(deadline) {
			t.Fatalf("redis at %s still accepts connections after being killed", r.addr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start starts the server again on the same port and returns once it
// answers PING. Starting a running server does nothing.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return
	}
	if err := r.start(); err != nil {
		t.Fatalf("restart redis-server on port %d: %v\n%s", r.port, err, logTail(r.log))
	}
}

// start runs redis-server on r.port and waits for PONG; r.mu is held or r
// is not shared yet.
func (r *Redis) start() error {
	logFile, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = r.dir
	proc, err := startProcess(cmd, syscall.SIGKILL)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(r.addr()) == nil {
			// The port might have been taken by another test's server, with
			// ours failing to bind: make sure the one answering is ours.
			pid, err := serverPID(r.addr())
			if err == nil && pid != proc.cmd.Process.Pid {
				err = fmt.Errorf("port %d is served by another redis-server (pid %d)", r.port, pid)
			}
			if err != nil {
				proc.stop(syscall.SIGKILL, time.Second)
				return err
			}
			r.proc = proc
			return nil
		}
		if proc.exited() {
			return fmt.Errorf("redis-server exited during start-up (%v)", proc.err)
		}
		if time.Now().After(deadline) {
			proc.stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("redis-server did not answer PING within %s", startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverPID asks a Redis server for its process ID (INFO server).
func serverPID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "INFO server\r\n"); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil {
		return 0, fmt.Errorf("INFO answered %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server names no process_id")
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("+PONG")) {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
