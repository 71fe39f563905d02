package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/blindbank/blindbank/bank"
)

// TestPeerAnsweredCallsBounded: a peer that never lets the bank send it
// anything (its streams' flow-control windows 0, never widened) makes
// small calls one after another on one connection. The bank answers each
// and gives its place among the address's calls in progress back, but
// keeps the stream, with its answer queued, until the peer takes the
// answer. The streams a connection may have open, no more than
// calls_per_peer, still count it: the peer holds at most calls_per_peer
// answered calls per connection, and its further calls are refused with
// REFUSED_STREAM. Without that limit it held every call it made (1024 a
// connection, each with its answer: up to some 2 MiB for GetLogEntries).
func TestPeerAnsweredCallsBounded(t *testing.T) {
	const calls = 4
	const tries = 4 * calls
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true,
		Limits: RateLimits{CallsPerPeer: calls, ConnsPerPeer: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	c := dialH2Settings(t, b.Addr, []byte{0, 0x4, 0, 0, 0, 0}) // SETTINGS_INITIAL_WINDOW_SIZE 0
	defer c.close()
	if !c.settled {
		t.Fatal("connection refused")
	}
	var answered, refused int
	for range tries {
		id := c.getKeys(b.Addr)
		c.mu.Lock()
		switch {
		case c.answered[id] && !c.ended_[id]:
			answered++ // its answer and status are held in the bank
		case c.reset[id]:
			refused++
		}
		done := c.done
		c.mu.Unlock()
		if done {
			t.Fatal("the bank closed the connection")
		}
	}
	t.Logf("%d calls: %d answered and held open, %d refused as beyond the connection's streams", tries, answered, refused)
	if answered != calls || refused != tries-calls {
		t.Errorf("one connection holds %d answered calls open and had %d refused of %d; want %d and the rest refused", answered, refused, tries, calls)
	}
}
