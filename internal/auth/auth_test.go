package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokensRejectForgeries(t *testing.T) {
	tok := NewTokens([]byte("secret-one"), time.Hour)
	good, err := tok.Issue("usr_1")
	if err != nil {
		t.Fatal(err)
	}
	if sub, err := tok.Verify("Bearer " + good); err != nil || sub != "usr_1" {
		t.Fatalf("Verify(good) = %q, %v", sub, err)
	}

	other, _ := NewTokens([]byte("secret-two"), time.Hour).Issue("usr_1")
	expired := NewTokens([]byte("secret-one"), -time.Minute)
	old, _ := expired.Issue("usr_1")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Subject: "usr_1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{
		Subject: "usr_1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString([]byte("secret-one"))
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "usr_1"}).SignedString([]byte("secret-one"))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]

	for name, bad := range map[string]string{
		"empty": "", "garbage": "abc", "other key": other, "expired": old,
		"alg none": none, "HS512": hs512, "no exp": noExp, "tampered": tampered,
	} {
		if _, err := tok.Verify(bad); err == nil {
			t.Errorf("%s: Verify accepted a bad token", name)
		}
	}
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct-horse")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct-horse") || CheckPassword(h, "wrong-horse") || CheckPassword("", "x") {
		t.Fatal("password check gave a wrong answer")
	}
}
