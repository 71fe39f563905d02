package pebblestore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// TestPruneWithdrawRefusalsInSteps: more refusals than one step of
// PruneWithdrawRefusals deletes (pruneBatch) are all deleted, with their
// time index (q/), in several operations; the ones at or after the
// cutoff stay, index and all.
func TestPruneWithdrawRefusalsInSteps(t *testing.T) {
	ctx := context.Background()
	s, err := Open("bank", Options{Logger: quiet, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.OpenAccount(ctx, "c", pub, false, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
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
