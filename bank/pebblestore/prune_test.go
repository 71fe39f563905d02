package pebblestore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// refusalStore is an empty store in memory, closed with the test, with a
// customer account id opened at at.
func refusalStore(t *testing.T) (s *Store, id uint64, at time.Time) {
	t.Helper()
	s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	at = time.Unix(1_800_000_000, 0)
	if id, err = s.OpenAccount(context.Background(), "c", pub, false, at); err != nil {
		t.Fatal(err)
	}
	return s, id, at
}

// TestPruneWithdrawRefusalsInSteps: more refusals than one step of
// PruneWithdrawRefusals deletes (pruneBatch) are all deleted, with their
// time index (q/), in several operations; the ones at or after the
// cutoff stay, index and all.
func TestPruneWithdrawRefusalsInSteps(t *testing.T) {
	ctx := context.Background()
	s, id, at := refusalStore(t)
	old, kept := 2*pruneBatch+3, 4
	for i := range old + kept {
		op := bank.RefuseWithdrawalOp{
			RequestHash: ecash.Hash(sha256.Sum256(fmt.Appendf(nil, "request %d", i))),
			Account:     id,
			Refusal:     bank.WithdrawRefusal{Code: codes.FailedPrecondition, Reason: "bank: insufficient funds"},
			Time:        at.Add(time.Duration(i) * time.Second),
		}
		if _, err := s.RefuseWithdrawal(ctx, op); err == nil {
			t.Fatalf("RefuseWithdrawal %d recorded nothing", i)
		}
	}
	n, err := s.PruneWithdrawRefusals(ctx, at.Add(time.Duration(old)*time.Second))
	if err != nil || n != int64(old) {
		t.Fatalf("PruneWithdrawRefusals = %d, %v; want %d", n, err, old)
	}
	if o, q := countPrefix(t, s.db, prefixRefused), countPrefix(t, s.db, prefixRefusedT); o != kept || q != kept {
		t.Fatalf("after pruning: %d refusals, %d index keys; want %d of each", o, q, kept)
	}
}

// TestPruneMalformedIndexKey: an index key of the wrong length at the
// head of q/ (corruption) stopped every pruning there, for good, while the
// refusals behind it piled up. It is deleted and reported once; the
// refusals behind it are pruned, and the next pruning finds nothing wrong.
func TestPruneMalformedIndexKey(t *testing.T) {
	ctx := context.Background()
	s, id, at := refusalStore(t)
	for i := range 3 {
		op := bank.RefuseWithdrawalOp{
			RequestHash: ecash.Hash(sha256.Sum256(fmt.Appendf(nil, "request %d", i))),
			Account:     id,
			Refusal:     bank.WithdrawRefusal{Code: codes.FailedPrecondition, Reason: "bank: insufficient funds"},
			Time:        at.Add(time.Duration(i) * time.Second),
		}
		if _, err := s.RefuseWithdrawal(ctx, op); err == nil {
			t.Fatalf("RefuseWithdrawal %d recorded nothing", i)
		}
	}
	// Sorts before every real index key: a time of zero, cut short.
	if err := s.db.Set([]byte(prefixRefusedT+"\x00\x00\x00"), nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneWithdrawRefusals(ctx, at.Add(time.Hour))
	if n != 3 || !errors.Is(err, errCorrupt) {
		t.Fatalf("pruning past a malformed index key: %d pruned, %v; want 3 and the corruption reported", n, err)
	}
	if o, q := countPrefix(t, s.db, prefixRefused), countPrefix(t, s.db, prefixRefusedT); o != 0 || q != 0 {
		t.Fatalf("after pruning: %d refusals, %d index keys; want none", o, q)
	}
	if n, err := s.PruneWithdrawRefusals(ctx, at.Add(time.Hour)); n != 0 || err != nil {
		t.Fatalf("the next pruning: %d, %v; want nothing to do", n, err)
	}
}
