package bank_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// TestAccountNameShown: an account's name is printed by the admin tools
// beside its balance, so the bank refuses one that could rewrite the
// terminal or reorder the line (an escape sequence, a carriage return, a
// bidi override), and opens nothing for it.
func TestAccountNameShown(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100, nil)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	for _, name := range []string{"\x1b[2Jalice", "alice\rmallory", "shop\u202eoob", "bad\xffutf8"} {
		if id, err := e.b.OpenAccount(t.Context(), name, pub, false); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("name %q: account %d, %v; want ErrMalformed", name, id, err)
		}
	}
	if _, err := e.b.OpenAccount(t.Context(), "Zoë's café", pub, false); err != nil {
		t.Errorf("a name with accents: %v", err)
	}
}
