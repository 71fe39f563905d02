package wallet_test

import (
	"context"
	"sync"
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
	r, acct := putBackWallet(t, f, clk, "", "EUR:0.63", "EUR:0.07")
	flaky := &flakyCoinsSpent{BankClient: f.bankc}
	flaky.fail.Store(1)
	_, err := r.Withdraw(ctx, flaky, ecash.MustParseAmount("EUR:0.63"), nil)
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

// raceBank: on the first PrepareWithdraw (Y's first round, its indices
// reserved) it runs onPrepare, during which the next PrepareWithdraw (X's)
// is held until release and then fails; after the first CoinsSpent (the
// catch-up's markSpent, its scan done) the next PrepareWithdraw (Y's
// retry) fails at once. The scan's own first rounds pass.
type raceBank struct {
	pb.BankClient
	mu        sync.Mutex
	onPrepare func()
	holdX     bool // the next PrepareWithdraw is X's
	failNext  bool // the next PrepareWithdraw is Y's retry
	spent     bool // CoinsSpent seen
	xEntered  chan struct{}
	release   chan struct{}
}

func (b *raceBank) CoinsSpent(ctx context.Context, in *pb.CoinsSpentRequest, opts ...grpc.CallOption) (*pb.CoinsSpentResponse, error) {
	b.mu.Lock()
	if !b.spent {
		b.spent, b.failNext = true, true
	}
	b.mu.Unlock()
	return b.BankClient.CoinsSpent(ctx, in, opts...)
}

func (b *raceBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	b.mu.Lock()
	f := b.onPrepare
	b.onPrepare = nil
	holdX, failNext := b.holdX, b.failNext
	b.holdX, b.failNext = false, false
	b.mu.Unlock()
	switch {
	case f != nil:
		f()
	case holdX:
		close(b.xEntered)
		<-b.release
		return nil, status.Error(codes.Unavailable, "X: the bank is unreachable")
	case failNext:
		return nil, status.Error(codes.Unavailable, "Y's retry: the bank is unreachable")
	}
	return b.BankClient.PrepareWithdraw(ctx, in, opts...)
}

// TestGiveBackAfterCatchUpKeepsCounter: a wallet put back from a copy (stale
// counter N; the lost wallet used [N, N+9)). Withdrawal Y (indices
// [N, N+6)) is refused ErrAlreadyIssued and catches up: it takes in the
// lost wallet's coins at [N, N+9). Withdrawal X reserved [N+6, N+9) during
// Y's first round (none can during the catch-up), so catchUp's
// raiseIndex(N+9) changes nothing. Y's retry
// and X both fail in their first round and give their indices back; X's
// giveBack saw the counter at its end and put it back to N+6: below coins
// the wallet now holds. It must see that coins were taken in since its
// reservation (the counter's generation) and give nothing back. The next request derives those planchets
// again (refused again if under the same denominations; under another
// denomination, the same coin keys signed and paid for again).
func TestGiveBackAfterCatchUpKeepsCounter(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, scheduleKeys(t, clk.now(), 40*time.Hour), clk.now)
	r, acct := putBackWallet(t, f, clk, "", "EUR:0.63", "EUR:0.07")
	n0, _ := wallet.NextIndex(r)
	rb := &raceBank{BankClient: f.bankc, xEntered: make(chan struct{}), release: make(chan struct{})}
	var xErr error
	xDone := make(chan struct{})
	rb.onPrepare = func() {
		rb.mu.Lock()
		rb.holdX = true
		rb.mu.Unlock()
		go func() {
			defer close(xDone)
			_, xErr = r.Withdraw(ctx, rb, ecash.MustParseAmount("EUR:0.07"), nil)
		}()
		<-rb.xEntered
	}
	_, yErr := r.Withdraw(ctx, rb, ecash.MustParseAmount("EUR:0.63"), nil)
	close(rb.release)
	<-xDone
	t.Logf("counter was %d; Y: %v; X: %v", n0, yErr, xErr)
	next, err := wallet.NextIndex(r)
	if err != nil {
		t.Fatal(err)
	}
	top, n, err := wallet.TopCoinIndex(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counter now %d; %d coins held, the highest at index %d", next, n, top)
	if next <= top {
		t.Errorf("the planchet counter is %d, at or below index %d of a coin the wallet holds (taken in by catchUp): the next request reuses it", next, top)
	}
	// The consequence, once the bank's keys have rotated.
	clk.add(9 * time.Hour)
	if _, err := r.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Balance()
	bal0 := f.balance(t, acct)
	if _, err := r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.07"), nil); err != nil {
		t.Fatal(err)
	}
	after, _ := r.Balance()
	if gained := after.Fresh.Value - before.Fresh.Value; gained != 7 {
		t.Fatalf("a withdrawal of EUR:0.07 (debited %d) added %d to the wallet: its coin keys are those of coins it holds", bal0-f.balance(t, acct), gained)
	}
}

// lyingBank answers the first Withdraw with the bank's ErrAlreadyIssued
// refusal, without sending it, and records the blinded hashes of the
// refused request, those asked about in IssuedSignatures and those of
// swap outputs.
type lyingBank struct {
	pb.BankClient
	mu      sync.Mutex
	lied    bool
	refused map[ecash.Hash]bool
	asked   map[ecash.Hash]bool
	swapped []ecash.Hash
}

func (b *lyingBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	b.mu.Lock()
	lie := !b.lied
	b.lied = true
	b.mu.Unlock()
	if lie {
		r, err := ecash.DecodeWithdrawRequest(in.Body)
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		for _, p := range r.Planchets {
			b.refused[ecash.HashOf(p.Blinded)] = true
		}
		b.mu.Unlock()
		return nil, status.Error(codes.AlreadyExists, "bank: blinded message already signed in another request; the planchet counter is stale: planchet 0")
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

func (b *lyingBank) IssuedSignatures(ctx context.Context, in *pb.IssuedSignaturesRequest, opts ...grpc.CallOption) (*pb.IssuedSignaturesResponse, error) {
	b.mu.Lock()
	for _, h := range in.BlindedHashes {
		b.asked[ecash.Hash(h)] = true
	}
	b.mu.Unlock()
	return b.BankClient.IssuedSignatures(ctx, in, opts...)
}

func (b *lyingBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		b.mu.Lock()
		for _, o := range r.Outputs {
			b.swapped = append(b.swapped, ecash.HashOf(o.Blinded))
		}
		b.mu.Unlock()
	}
	return b.BankClient.Swap(ctx, in, opts...)
}

// TestCatchUpUnverifiedClaimScansNothing: an ALREADY_EXISTS refusal with
// ErrAlreadyIssued's text proves nothing. The wallet believed it and
// scanned: in one IssuedSignatures call beginning with the refused
// withdrawal's own blinded messages (seen under the account's signature),
// the blinded messages of the next RestoreGap planchet indices under every
// denomination, which its later swaps then used: the bank linked the swaps
// to the account. Now it asks only about the refused request's own
// messages (which the bank saw), finds no signature that unblinds to a
// coin of its seed, scans nothing, and withdraws past the refused indices.
// (An honest catch-up, or a bank that signs one of the refused messages to
// pass the check, still scans ahead: see catchUp.)
func TestCatchUpUnverifiedClaimScansNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f.fund(t, w, "EUR:10.00")
	lb := &lyingBank{BankClient: f.bankc, refused: map[ecash.Hash]bool{}, asked: map[ecash.Hash]bool{}}
	if _, err := w.Withdraw(ctx, lb, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	if len(lb.refused) == 0 {
		t.Fatal("no refusal")
	}
	for h := range lb.asked {
		if !lb.refused[h] {
			t.Fatalf("the wallet asked the bank about %d blinded messages, not only the %d of the refused request: it scanned on an unverified claim", len(lb.asked), len(lb.refused))
		}
	}
	for range 3 {
		if _, err := w.Swap(ctx, lb, ecash.MustParseAmount("EUR:0.64")); err != nil {
			t.Fatal(err)
		}
	}
	linked := 0
	for _, h := range lb.swapped {
		if lb.asked[h] {
			linked++
		}
	}
	t.Logf("scan asked about %d blinded messages; %d of %d swap outputs were among them", len(lb.asked), linked, len(lb.swapped))
	if linked > 0 {
		t.Fatalf("%d of %d later swap outputs were shown to the bank by the catch-up's scan, beside the account's withdrawal", linked, len(lb.swapped))
	}
}

// putBackWallet is a wallet put back from a copy, its planchet counter
// stale: a wallet on f's bank (clock clk) funded with EUR:10.00 (and, if
// first is not empty, holding a withdrawal of first) is copied; the
// original, the lost wallet, then withdraws each of later; the copy is
// opened. It returns the copy, closed when t ends, and the account.
func putBackWallet(t *testing.T, f *fixture, clk *clock, first string, later ...string) (*wallet.Wallet, uint64) {
	t.Helper()
	return putBackWalletWith(t, f, clk, wallet.Options{}, first, later...)
}

// putBackWalletWith is putBackWallet, the copy opened with opts (its
// clock clk's).
func putBackWalletWith(t *testing.T, f *fixture, clk *clock, opts wallet.Options, first string, later ...string) (*wallet.Wallet, uint64) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	acct := f.fund(t, w, "EUR:10.00")
	if first != "" {
		if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount(first), nil); err != nil {
			t.Fatal(err)
		}
	} else if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	w.Close()
	backup := putBack(t, dir)
	w, err = wallet.Open(dir, wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range later {
		if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount(a), nil); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	opts.Now = clk.now
	r, err := wallet.Open(backup, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, acct
}
