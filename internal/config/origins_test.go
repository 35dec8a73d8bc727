package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAllowedOrigins(t *testing.T) {
	load := func(v string) (*Config, error) {
		return Load(func(k string) (string, bool) { return v, k == "ALLOWED_ORIGINS" })
	}
	c, err := load(" https://app.example.com/, *.example.org ,localhost:*,, ")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.com", "*.example.org", "localhost:*"}; !slices.Equal(c.AllowedOrigins, want) {
		t.Fatalf("AllowedOrigins = %q, want %q", c.AllowedOrigins, want)
	}
	if c, err := load(""); err != nil || c.AllowedOrigins != nil || c.WSWriteTimeout.String() != "10s" || c.WSMaxConnsPerUser != 20 {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	for _, bad := range []string{"https://app.example.com/path", "[", "https://"} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "ALLOWED_ORIGINS") {
			t.Errorf("%q: %v, want an error naming ALLOWED_ORIGINS", bad, err)
		}
	}
}
