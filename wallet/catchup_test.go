package wallet_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// flakyCoinsSpent fails CoinsSpent calls while fail > 0.
type flakyCoinsSpent struct {
	pb.BankClient
	fail atomic.Int32
}

func (b *flakyCoinsSpent) CoinsSpent(ctx context.Context, in *pb.CoinsSpentRequest, opts ...grpc.CallOption) (*pb.CoinsSpentResponse, error) {
	if b.fail.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "the bank is unreachable")
	}
	return b.BankClient.CoinsSpent(ctx, in, opts...)
}

// TestCatchUpFailureKeepsCounterPastHeldCoins: a wallet put back
// from a copy withdraws; the bank refuses (ErrAlreadyIssued) and the
// catch-up takes in the lost wallet's coins at [N, N+9), then fails on a
// transient error (CoinsSpent unreachable) before its end. The counter
// must be past those coins already (addCoins raises it in the batch that
// stores them); it was left at N+6, behind coins the wallet held. After the bank's key rotation
// the next withdrawal derives indices N+6.. again under the new keys: new
// blinded messages the bank signs and debits, for coin keys the wallet
// already holds coins of; storeCoins keeps the old records, and the
// account paid for coins the wallet does not have.
func TestCatchUpFailureKeepsCounterPastHeldCoins(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	acct := f.fund(t, w, "EUR:10.00")
	if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	w.Close()
	backup := putBack(t, dir)
	w, err = wallet.Open(dir, wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"EUR:0.63", "EUR:0.07"} {
		if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount(a), nil); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()

	r, err := wallet.Open(backup, wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	flaky := &flakyCoinsSpent{BankClient: f.bankc}
	flaky.fail.Store(1)
	_, err = r.Withdraw(ctx, flaky, ecash.MustParseAmount("EUR:0.63"), nil)
	t.Logf("withdrawal from the copy: %v", err)
	next, _ := wallet.NextIndex(r)
	top, n, _ := wallet.TopCoinIndex(r)
	t.Logf("counter %d; %d coins held, the highest at index %d", next, n, top)
	if next <= top {
		t.Errorf("the planchet counter is %d, at or below index %d of a coin the wallet holds", next, top)
	}

	clk.add(9 * time.Hour) // the next period's keys withdraw now
	if _, err := r.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Balance()
	debit := f.balance(t, acct)
	got, err := r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.07"), nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := r.Balance()
	debited := debit - f.balance(t, acct)
	t.Logf("withdrew %d coins; account debited %d; wallet fresh %s -> %s", len(got), debited, before.Fresh, after.Fresh)
	if after.Fresh.Value-before.Fresh.Value != 7 {
		t.Fatalf("a withdrawal of EUR:0.07 (debited %d) added %d to the wallet: its coins' keys are those of coins the catch-up took in", debited, after.Fresh.Value-before.Fresh.Value)
	}
}
