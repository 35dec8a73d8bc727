package config

import (
	"os"
	"strings"
	"testing"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.JWTSecretSet || len(c.JWTSecret) < 32 || c.DatabaseURL != "./data/parley.db" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestBadValuesAreNamed(t *testing.T) {
	env := map[string]string{"TOKEN_TTL": "soon", "MAX_PAGE_SIZE": "-1", "JWT_SECRET": "short", "LOG_FORMAT": "xml"}
	_, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for k := range env {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error does not name %s: %v", k, err)
		}
	}
}

// The README's configuration table must list every variable with the
// default the code uses.
func TestREADMEListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Vars {
		row := "| `" + v.Name + "` | " + v.Default + " |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the row %q", row)
		}
	}
}
