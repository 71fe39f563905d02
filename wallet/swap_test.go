package wallet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// lossySwaps loses the bank's answers to swaps after it committed them.
type lossySwaps struct {
	pb.BankClient
	lose  atomic.Int32
	swaps atomic.Int32 // swaps forwarded
}

func (l *lossySwaps) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	l.swaps.Add(1)
	resp, err := l.BankClient.Swap(ctx, in, opts...)
	if err == nil && l.lose.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// checkConservation checks the ledger sums to zero and that the e-cash in
// circulation is what the wallets hold fresh, pending or expired.
func (f *fixture) checkConservation(t *testing.T, ws ...*wallet.Wallet) {
	t.Helper()
	totals, err := f.bank.Store().Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range totals {
		sum += v
	}
	if sum != 0 {
		t.Errorf("ledger sums to %d", sum)
	}
	var held uint64
	for _, w := range ws {
		bal, err := w.Balance()
		if err != nil {
			t.Fatal(err)
		}
		held += bal.Fresh.Value + bal.Pending.Value + bal.Expired.Value // worthless, yet outstanding at the bank
	}
	if out := totals[bank.AccountOutstanding]; out != int64(held) {
		t.Errorf("outstanding e-cash %d, wallets hold %d", out, held)
	}
}

func newWallet(t *testing.T, f *fixture, funds, withdraw string) (*wallet.Wallet, uint64) {
	t.Helper()
	w, acct := fundedWallet(t, f, funds)
	if _, err := w.Withdraw(context.Background(), f.bankc, ecash.MustParseAmount(withdraw), nil); err != nil {
		t.Fatal(err)
	}
	return w, acct
}

// fundedWallet creates a wallet, closed when the test ends, with an account
// credited funds.
func fundedWallet(t *testing.T, f *fixture, funds string) (*wallet.Wallet, uint64) {
	t.Helper()
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, f.fund(t, w, funds)
}

func fresh(t *testing.T, w *wallet.Wallet) string {
	t.Helper()
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() {
		t.Errorf("pending %s", bal.Pending)
	}
	return bal.Fresh.String()
}

// TestPayWithChange: payments the coins cannot make exactly are preceded by
// a swap, over both ciphers; every balance is exact to the cent.
func TestPayWithChange(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:5.12")
	counting := &lossySwaps{BankClient: f.bankc}
	paid := uint64(0)
	for _, amount := range []string{"EUR:0.03", "EUR:0.03", "EUR:0.07", "EUR:2.99", "EUR:0.01", "EUR:1.99"} {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount(amount), "change test", 0)
		if err != nil {
			t.Fatal(err)
		}
		rcpt, err := w.Pay(ctx, counting, f.shop, "shop", o.ID, nil)
		if err != nil {
			t.Fatalf("pay %s: %v", amount, err)
		}
		if rcpt.Total.String() != amount {
			t.Fatalf("receipt for %s, want %s", rcpt.Total, amount)
		}
		paid += ecash.MustParseAmount(amount).Value
		want := ecash.Amount{Currency: "EUR", Value: 512 - paid}
		if got := fresh(t, w); got != want.String() {
			t.Fatalf("after paying %s: fresh %s, want %s", amount, got, want)
		}
		f.checkConservation(t, w)
	}
	if got := f.balance(t, f.shopAcct); got != int64(paid) {
		t.Errorf("merchant credited %d, want %d", got, paid)
	}
	if n := counting.swaps.Load(); n < 2 {
		t.Errorf("%d swaps: the amounts were chosen to need change several times", n)
	}
	t.Logf("%d payments needed %d swaps", 6, counting.swaps.Load())
	// More than the wallet holds: refused, nothing changes.
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:5.00"), "too much", 0)
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); !errors.Is(err, wallet.ErrNoExactChange) {
		t.Errorf("paying more than held: %v, want ErrNoExactChange", err)
	}
	f.checkConservation(t, w)
}

// TestSwapAnswerLost: the bank commits a swap and the answer is lost. The
// coins stay pending; Recover re-sends the same request and gets the same
// signatures: the wallet ends with exactly its value.
func TestSwapAnswerLost(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:2.56")
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(1)
	if _, err := w.Swap(ctx, lossy, ecash.MustParseAmount("EUR:1.28")); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("swap with a lost answer: %v, want ErrPending", err)
	}
	bal, _ := w.Balance()
	if bal.Pending.String() != "EUR:1.28" || bal.Fresh.String() != "EUR:1.28" {
		t.Fatalf("after the lost answer: fresh %s, pending %s", bal.Fresh, bal.Pending)
	}
	if _, err := w.Recover(ctx, lossy); err != nil {
		t.Fatal(err)
	}
	if got := fresh(t, w); got != "EUR:2.56" {
		t.Fatalf("after Recover: fresh %s, want EUR:2.56", got)
	}
	if n := lossy.swaps.Load(); n != 2 {
		t.Errorf("%d swap calls, want 2 (the lost one and its retry)", n)
	}
	f.checkConservation(t, w)
	// The new coins spend.
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:2.56"), "all of it", 0)
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	f.checkConservation(t, w)
}

// TestCopiedWalletSwap: a copy of a wallet swaps coins the original then
// tries to swap: the bank refuses the second with a proof; the original
// marks only that coin spent.
func TestCopiedWalletSwap(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := copiedWallet(t, f, "EUR:0.03")
	if _, err := b.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.02")); err != nil {
		t.Fatal(err)
	}
	_, err := a.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.03"))
	if !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("swapping coins a copy swapped: %v, want a double spend", err)
	}
	if got := fresh(t, a); got != "EUR:0.01" {
		t.Errorf("original after the refusal: fresh %s, want EUR:0.01 (the coin the copy kept)", got)
	}
}

// copiedWallet makes a wallet holding coins worth withdraw (funded with
// EUR:10.00) and a copy of it, b, as a backup restored beside it would be:
// both hold the same coins. Both are closed when the test ends.
func copiedWallet(t *testing.T, f *fixture, withdraw string) (a, b *wallet.Wallet) {
	t.Helper()
	return copiedWalletWith(t, f, wallet.Options{}, withdraw)
}

// copiedWalletWith is copiedWallet with both wallets opened with opts.
func copiedWalletWith(t *testing.T, f *fixture, opts wallet.Options, withdraw string) (a, b *wallet.Wallet) {
	t.Helper()
	dirA := t.TempDir()
	a, err := wallet.Create(dirA, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, a, "EUR:10.00")
	if _, err := a.Withdraw(context.Background(), f.bankc, ecash.MustParseAmount(withdraw), nil); err != nil {
		t.Fatal(err)
	}
	a.Close()
	dirB := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	open := func(dir string) *wallet.Wallet {
		w, err := wallet.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w
	}
	return open(dirA), open(dirB)
}

// TestReturn: coins go back to the wallet's own account, with change made
// first; the account is credited exactly.
func TestReturn(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, acct := newWallet(t, f, "EUR:10.00", "EUR:5.00")
	if got := f.balance(t, acct); got != 500 {
		t.Fatalf("account %d after withdrawing", got)
	}
	rcpt, err := w.Return(ctx, f.bankc, ecash.MustParseAmount("EUR:1.03"))
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Total.String() != "EUR:1.03" || rcpt.MerchantAccount != acct {
		t.Errorf("receipt: %s to %d", rcpt.Total, rcpt.MerchantAccount)
	}
	if got := f.balance(t, acct); got != 603 {
		t.Errorf("account %d after returning EUR:1.03, want 603", got)
	}
	if got := fresh(t, w); got != "EUR:3.97" {
		t.Errorf("fresh %s, want EUR:3.97", got)
	}
	f.checkConservation(t, w)
	if _, err := w.Return(ctx, f.bankc, ecash.MustParseAmount("EUR:4.00")); !errors.Is(err, wallet.ErrNoExactChange) {
		t.Errorf("returning more than held: %v", err)
	}
}
