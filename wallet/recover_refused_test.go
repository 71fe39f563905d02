package wallet_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// unsentWithdraw fails every Withdraw before it reaches the bank: the
// request stays pending, for Recover.
type unsentWithdraw struct{ pb.BankClient }

func (unsentWithdraw) Withdraw(context.Context, *pb.WithdrawRequest, ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	return nil, status.Error(codes.Unavailable, "the bank is unreachable")
}

// TestRecoveredRefusedWithdrawalParksIndices: withdrawals of 64 coins each
// are persisted but never reach the bank; Recover sends each one later and
// the bank refuses it (the account lacks the funds). A refusal of the live
// call parks the indices for the next withdrawal; the recovered refusals
// skipped theirs, five of them 320 indices in a row with no coin, more than
// RestoreGap: a restore from the seed stopped before the coins withdrawn
// after them, and the restored wallet held nothing.
func TestRecoveredRefusedWithdrawalParksIndices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:1.00")
	n0, _ := wallet.NextIndex(w)
	big := ecash.MustParseAmount("EUR:286.71") // 64 coins: one of each value to 5.12, then 54 of 5.12
	for i := range 5 {
		if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, big, nil); !errors.Is(err, wallet.ErrPending) {
			t.Fatalf("withdrawal %d never sent: %v, want ErrPending", i, err)
		}
		err := w.Recover(ctx, f.bankc)
		t.Logf("recovered withdrawal %d: %v", i, err)
		if n, _ := w.PendingWithdrawals(); n != 0 {
			t.Fatalf("withdrawal %d still pending after the bank refused it", i)
		}
	}
	next, _ := wallet.NextIndex(w)
	t.Logf("counter %d before the refused withdrawals, %d after", n0, next)
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	top, _, _ := wallet.TopCoinIndex(w)
	r, rep, err := wallet.Restore(ctx, t.TempDir(), w.Seed(), f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("coins up to index %d; the restore scanned %d indices, found %d coins, %s", top, rep.Scanned, rep.Found, rep.Fresh)
	if rep.Fresh.String() != "EUR:1.00" {
		t.Fatalf("restored %s from the seed; the wallet holds EUR:1.00, its coins past %d indices the refused withdrawals skipped", rep.Fresh, top)
	}
}

// answerLostThenUnknown passes the first Withdraw to the bank and loses
// its answer; it refuses every later one NotFound, as a bank did before
// it looked its record up (a denomination the replica asked did not
// serve).
type answerLostThenUnknown struct {
	pb.BankClient
	sent bool
}

func (c *answerLostThenUnknown) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if c.sent {
		return nil, status.Error(codes.NotFound, "ecash: unknown denomination")
	}
	c.sent = true
	if _, err := c.BankClient.Withdraw(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "connection reset")
}

// TestRecoveredUnknownDenominationKeepsIndices: a recovered request is a
// retry whose first send's outcome is unknown. Refused by a bank that has
// not looked its record up (NotFound, InvalidArgument, Unauthenticated),
// the bank may have signed its planchets: parked, the next withdrawal
// reused the indices, and under another key paid for coins whose keys a
// restore finds twice. Only refusals made after the record (funds,
// limits, a lock) park a recovered request.
func TestRecoveredUnknownDenominationKeepsIndices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	n0, _ := wallet.NextIndex(w)
	c := &answerLostThenUnknown{BankClient: f.bankc}
	if _, err := w.Withdraw(ctx, c, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	err := w.Recover(ctx, c)
	t.Logf("recovered: %v", err)
	if n, _ := wallet.NextIndex(w); n == n0 {
		t.Fatalf("the indices of a recovered withdrawal the bank signed were parked after a refusal made before its record (counter back at %d)", n)
	}
}
