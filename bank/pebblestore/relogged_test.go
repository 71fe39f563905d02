package pebblestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// TestOlderKeySetLoggedAgainWarned: a version before this one logged an
// older key set again when a replica restarted on an old key file (k0,
// k1, k0). A set in the log is never logged again now, so a bank serving
// k1 leaves k0 the newest entry, the one checkpoints name, and the
// wallets it serves report it at every verify-log. The operator is told,
// with the remedy, when the bank publishes its key set.
func TestOlderKeySetLoggedAgainWarned(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, vfs.NewMem())
	start := time.Unix(1_800_000_000, 0)
	k0, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{{Value: ecash.Amount{Currency: "EUR", Value: 1}, Cipher: ecash.CipherCS}}}, start, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k1 := *k0
	k1.IssuedAt = k0.IssuedAt.Add(time.Hour) // a later, non-revoking set
	s0, s1 := k0.KeySet().Encode(), k1.KeySet().Encode()
	for _, signed := range [][]byte{s0, s1} {
		if err := s.PublishKeySet(ctx, signed, start); err != nil {
			t.Fatal(err)
		}
	}
	// k0 again, as the earlier version logged it.
	h0 := sha256.Sum256(s0)
	if err := s.submit(ctx, func(tx *txn) error {
		if err := tx.appendLog(auditlog.KeySet{Signed: s0}, start, (*ecash.Hash)(&h0)); err != nil {
			return err
		}
		tx.set(keyKeySetHash, h0[:])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b := bank.New(s, &k1, func() time.Time { return start.Add(2 * time.Hour) }, slog.New(slog.NewTextHandler(&out, nil)))
	if err := b.PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	if size, newest, _, _ := s.LogHead(ctx); size != 3 || newest.Index != 2 || newest.Ref != h0 {
		t.Fatalf("log of %d entries, newest key set at %d: want k0 at 2 of 3, logged nothing", size, newest.Index)
	}
	if !strings.Contains(out.String(), "level=ERROR") || !strings.Contains(out.String(), "publish one") {
		t.Fatalf("publishing a set newer than the log's newest key set entry told the operator nothing: %q", out.String())
	}
	// Serving the newest logged set says nothing.
	out.Reset()
	if err := bank.New(s, k0, func() time.Time { return start.Add(2 * time.Hour) }, slog.New(slog.NewTextHandler(&out, nil))).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("serving the newest logged key set: %q", out.String())
	}
}
