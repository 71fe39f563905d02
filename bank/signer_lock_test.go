package bank

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSignerNonceLogOneSigner: two signers answering from one nonce log
// could each answer a different challenge for one CS nonce, which reveals
// the key, so the second is refused while the first holds the log.
func TestSignerNonceLogOneSigner(t *testing.T) {
	k := oneCSKey(t, time.Now(), time.Hour)
	path := filepath.Join(t.TempDir(), SignerNoncesFile)
	s, err := NewSignerServer(k, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := NewSignerServer(k, path, nil); err == nil {
		s2.Close()
		t.Fatal("a second signer opened a nonce log another holds")
	} else if !strings.Contains(err.Error(), "in use by another signer") {
		t.Fatalf("second signer: %v, want the log named in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = NewSignerServer(k, path, nil)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	s.Close()
}
