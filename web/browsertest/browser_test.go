// Package browsertest drives the web chat (/app) and GraphiQL (/) in a real
// browser: Debian's chromium, through playwright-core, against a real
// server started on loopback by apptest (SQLite, or PostgreSQL with
// PARLEY_TEST_DATABASE=postgres).
//
// Each test starts the server and runs one Node.js script of this directory
// (chat.mjs, graphiql.mjs), passing the server's URL and whatever else the
// script needs in its environment; the script exits non-zero when a check
// fails, after saving screenshots of its pages under the artifacts
// directory (PARLEY_TEST_ARTIFACTS, or test-artifacts/browser at the
// repository root). Needs node, /usr/bin/chromium (or CHROMIUM) and
// `npm ci` run in this directory; without them the tests are skipped, except
// in CI (CI=true), where that is a failure. .ci/run installs all three.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/testinfra"
)

// TestMain stops the PostgreSQL server that PARLEY_TEST_DATABASE=postgres
// starts, once every test is done.
func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }

// scriptTimeout bounds one script. Each takes a few seconds; a hung
// browser must fail the test long before go test's own timeout.
const scriptTimeout = 90 * time.Second

// prerequisites returns the node binary to run scripts with. What is
// missing skips the test on a developer's machine and fails it in CI.
func prerequisites(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser tests: %s (CI=true: .ci/run must provide it)", what)
		}
		t.Skipf("browser tests skipped: %s", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	if _, err := os.Stat(chromium()); err != nil {
		missing(chromium() + " is missing (apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed (run `npm ci` in web/browsertest)")
	}
	return node
}

func chromium() string {
	if c := os.Getenv("CHROMIUM"); c != "" {
		return c
	}
	return "/usr/bin/chromium"
}

// artifactsDir is where a failing script leaves its screenshots, one
// directory per test and database kind, so that the SQLite and PostgreSQL
// runs of .ci/run do not overwrite each other's.
func artifactsDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("PARLEY_TEST_ARTIFACTS")
	if root == "" {
		root = filepath.Join("..", "..", "test-artifacts")
	}
	db := os.Getenv("PARLEY_TEST_DATABASE")
	if db == "" {
		db = "sqlite"
	}
	dir, err := filepath.Abs(filepath.Join(root, "browser", t.Name()+"-"+db))
	if err != nil {
		t.Fatal(err)
	}
	// Screenshots of an earlier failure would be mistaken for this run's.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runScript runs a script of this directory with env added to the test
// process's environment, and fails the test if it fails.
func runScript(t *testing.T, node, script string, env ...string) {
	t.Helper()
	artifacts := artifactsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), append([]string{"PARLEY_ARTIFACTS=" + artifacts, "CHROMIUM=" + chromium()}, env...)...)
	// On timeout, interrupt rather than kill: Playwright then closes the
	// browser it started instead of leaving it behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("node %s (%s):\n%s", script, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("%s did not finish within %s", script, scriptTimeout)
	}
	if err != nil {
		t.Fatalf("%s failed: %v; screenshots and the browser console are under %s", script, err, artifacts)
	}
}

// Two users in two browser contexts: sign-up and sign-in, starting a
// conversation, unread count and last message, read receipts, a message
// shown to the other user within a second, typing indicators, edit and
// delete, and a network drop after which the missed messages show (resumed
// with `after`). The checks are in chat.mjs.
func TestChat(t *testing.T) {
	t.Parallel()
	node := prerequisites(t)
	s := apptest.Start(t)
	bob := s.RegisterFor(t, "bob") // registered with the password "password-123"
	runScript(t, node, "chat.mjs",
		"PARLEY_URL="+s.URL,
		"PARLEY_BOB_USERNAME="+bob.Username,
		"PARLEY_BOB_PASSWORD=password-123",
	)
}

// GraphiQL at / runs a subscription over its WebSocket and shows an event
// in its result pane. The checks are in graphiql.mjs.
func TestGraphiQLSubscription(t *testing.T) {
	t.Parallel()
	node := prerequisites(t)
	s := apptest.Start(t)
	alice, bob := s.RegisterFor(t, "alice"), s.RegisterFor(t, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	runScript(t, node, "graphiql.mjs",
		"PARLEY_URL="+s.URL,
		"PARLEY_TOKEN="+bob.Token,
		"PARLEY_SENDER_TOKEN="+alice.Token,
		"PARLEY_CONVERSATION="+conv,
	)
}
