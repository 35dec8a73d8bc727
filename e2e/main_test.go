package e2e

import (
	"os"
	"testing"

	"github.com/parley-chat/parley/internal/testinfra"
)

// TestMain stops the PostgreSQL server that PARLEY_TEST_DATABASE=postgres
// (or a test needing Redis or PostgreSQL) starts, once every test is done.
func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }
