package wallet_test

// Regression tests for the findings of the first security review: each
// failed before its fix.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }

// A withdrawal whose answer was lost is retried after the denomination's
// withdraw window closed: the bank answers from its record (the debit
// happened) instead of refusing, and the wallet gets its coins.
func TestWithdrawRetryAfterWindowCloses(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 100}},
		WithdrawPeriod: time.Hour, DepositPeriod: 48 * time.Hour}, clk.now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, k, clk.now)
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	acct := f.fund(t, w, "EUR:5.00")
	lossy := &lossyBank{BankClient: f.bankc}
	lossy.loseWithdraw.Store(1)
	clk.add(59 * time.Minute)
	if _, err := w.Withdraw(ctx, lossy, ecash.MustParseAmount("EUR:3.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("lost answer: %v, want ErrPending", err)
	}
	clk.add(2 * time.Minute) // past WithdrawEnd, within DepositEnd
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatalf("recover after the window closed: %v", err)
	}
	bal, _ := w.Balance()
	if bal.Fresh.String() != "EUR:3.00" || f.balance(t, acct) != 200 {
		t.Fatalf("wallet %s, bank balance %d; want EUR:3.00 and 200", bal.Fresh, f.balance(t, acct))
	}
}

// The bank commits a deposit but the merchant never learns it; the wallet
// retries after the order expired. Nobody may release the coins: the wallet
// learns from the bank that the payment went through.
func TestExpiredOrderPaidBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:5.00", "EUR:2.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.toBank.lose.Store(1)
	// The merchant relays "unavailable"; the wallet asks the bank straight
	// away and finds the receipt.
	rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil || rcpt.Total.String() != "EUR:1.00" {
		t.Fatalf("pay with the bank's answer lost: %v", err)
	}
	clk.add(2 * time.Minute)
	// Asked again after expiry, the wallet answers from its receipt.
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("re-paying after expiry: %v", err)
	}
	bal, _ := w.Balance()
	if bal.Fresh.String() != "EUR:1.00" || !bal.Pending.IsZero() || f.balance(t, f.shopAcct) != 100 {
		t.Fatalf("wallet fresh %s pending %s, merchant %d", bal.Fresh, bal.Pending, f.balance(t, f.shopAcct))
	}
}

// Coins pending for a payment the bank never recorded are released once the
// request is past the point where the bank would still accept it, and not
// before.
func TestPendingReleasedAfterExpiry(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:5.00", "EUR:2.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("merchant down: %v", err)
	}
	clk.add(2 * time.Minute) // expired, but the bank's grace is not over
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	if bal, _ := w.Balance(); bal.Pending.String() != "EUR:1.00" {
		t.Fatalf("released too early: pending %s", bal.Pending)
	}
	clk.add(2 * ecash.MaxClockSkew)
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	if bal, _ := w.Balance(); bal.Fresh.String() != "EUR:2.00" || !bal.Pending.IsZero() {
		t.Fatalf("after the grace: fresh %s pending %s", bal.Fresh, bal.Pending)
	}
}

// The bank refuses a new deposit of a payment request past its expiry (plus
// the skew), so a sealed payment captured earlier cannot be cashed later.
func TestBankRefusesExpiredDeposit(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:5.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sealed := capturePayment(t, f, w, o)
	clk.add(30 * 24 * time.Hour)
	_, err = f.bankc.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deposit 30 days after expiry: %v, want FailedPrecondition", err)
	}
}

// Nor a deposit for a request created ahead of the bank's clock: the
// wallet dates its deposit permissions at the request's creation, so such
// a request could otherwise stay payable, and a wallet's coins sent for it
// pending, for as long as the merchant chose.
func TestBankRefusesDepositCreatedAhead(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:5.00", "EUR:1.00")
	clk.add(time.Hour) // the merchant's clock, and the wallet's, an hour ahead
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sealed := capturePayment(t, f, w, o)
	clk.add(-time.Hour) // the bank's
	_, err = f.bankc.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("deposit of a request created an hour ahead: %v, want InvalidArgument", err)
	}
	clk.add(time.Hour)
	if _, err = f.bankc.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed}); err != nil {
		t.Fatalf("the same deposit once the bank's clock reaches it: %v", err)
	}
}

// capturePayment has w pay order o to a merchant that keeps the sealed
// payment and never deposits it, and returns it.
func capturePayment(t *testing.T, f *fixture, w *wallet.Wallet, o *merchant.Order) []byte {
	t.Helper()
	capture := &capturingMerchant{MerchantClient: f.shop}
	w.Pay(context.Background(), f.bankc, capture, "shop", o.ID, nil)
	if capture.got == nil {
		t.Fatal("no payment captured")
	}
	return capture.got.SealedPayment
}

type capturingMerchant struct {
	pb.MerchantClient
	got *pb.PayRequest
}

func (c *capturingMerchant) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	c.got = in
	return nil, status.Error(codes.Unavailable, "down (simulated)")
}

// The same order paid under two spellings of the merchant's address reuses
// the one pending payment: no coins are left pending without a record.
func TestPendingPaymentNotOverwritten(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:10.00")
	for range 2 {
		if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
			t.Fatal(err)
		}
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "x", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop.example:443", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("first attempt: %v", err)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "192.0.2.7:443", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	bal, _ := w.Balance()
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:3.00" {
		t.Fatalf("fresh %s pending %s; want EUR:3.00 and nothing pending", bal.Fresh, bal.Pending)
	}
}

// The wallet's directory, which holds the seed, is private to its owner.
func TestWalletDirectoryIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("wallet directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

// An account with too little money is refused for its balance, as the bank
// checks before it signs (bank's TestRefusedBeforeSigning counts that it
// signs nothing).
func TestWithdrawRefusedBeforeSigning(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	id, err := f.bank.OpenAccount(ctx, "d", acctKey.Public().(ed25519.PublicKey), false)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := f.bank.KeySet()
	rsa := ks.Denominations[len(ks.Denominations)-1]
	req := &ecash.WithdrawRequest{Account: id, CreatedAt: time.Now()}
	wellFormed := make([]byte, 2048/8) // below any 2048-bit modulus
	wellFormed[len(wellFormed)-1] = 1
	for range ecash.MaxCoinsPerRequest {
		req.Planchets = append(req.Planchets, ecash.Planchet{Denom: rsa.ID, Blinded: wellFormed})
	}
	body := req.Body()
	amount, err := ks.WithdrawAmount(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.bankc.Withdraw(ctx, &pb.WithdrawRequest{Body: body, AccountSig: ecash.SignWithdraw(acctKey, req, amount)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("zero-balance withdrawal: %v, want FailedPrecondition (insufficient funds)", err)
	}
}

// Keys of small order would let anyone sign for the account: refused.
func TestWeakAccountKeyRefused(t *testing.T) {
	f := newFixture(t)
	weak := make([]byte, 32)
	weak[0] = 1 // the identity point
	if _, err := f.bank.OpenAccount(context.Background(), "weak", weak, false); !errors.Is(err, ecash.ErrBadKey) {
		t.Fatalf("identity key: %v, want ErrBadKey", err)
	}
	if _, err := f.bank.OpenAccount(context.Background(), "short", weak[:31], false); !errors.Is(err, ecash.ErrBadKey) {
		t.Fatalf("short key: %v, want ErrBadKey", err)
	}
}

// TestPayAgainUnderAnotherAddress: an order paid to the merchant under
// one spelling of its address ("shop") and paid again under another
// ("127.0.0.1:shop") is the same signed payment request. The wallet must
// answer from the receipt it kept, sending no coins: it reserved new
// coins, which the bank refused (the order paid) after seeing them, so
// they came back revealed.
func TestPayAgainUnderAnotherAddress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.25"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	asked := false
	_, err = w.Pay(ctx, f.bankc, f.shop, "127.0.0.1:shop", o.ID, func(*wallet.Offer) error { asked = true; return nil })
	var ap *wallet.AlreadyPaidError
	if !errors.As(err, &ap) || asked || !bytes.Equal(ap.Receipt.Encode(), rcpt.Encode()) {
		t.Fatalf("paying again under another address: %v (asked to confirm: %v); want an *AlreadyPaidError with the kept receipt, unasked", err, asked)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if bal.Fresh.String() != "EUR:0.75" || !bal.Revealed.IsZero() || !bal.Pending.IsZero() {
		t.Fatalf("fresh %s (revealed %s), pending %s; want EUR:0.75, none revealed or pending", bal.Fresh, bal.Revealed, bal.Pending)
	}
}

// TestPayAgainUnderAnotherAddressOldStore: a wallet whose receipts were
// kept before they were indexed by payment request finds them all the same
// (indexed once, at the first lookup).
func TestPayAgainUnderAnotherAddressOldStore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	var paid [][]byte
	var ids []string
	for range 2 {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.25"), "tea", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		paid, ids = append(paid, rcpt.Encode()), append(ids, o.ID)
	}
	if err := wallet.ForgetPaidIndex(w); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		_, err := w.Pay(ctx, f.bankc, f.shop, "127.0.0.1:shop", id, nil)
		var ap *wallet.AlreadyPaidError
		if !errors.As(err, &ap) || !bytes.Equal(ap.Receipt.Encode(), paid[i]) {
			t.Fatalf("order %d paid before the index, paid again under another address: %v; want an *AlreadyPaidError with its receipt", i, err)
		}
	}
}

// TestPayAgainAfterExpiryUnderAnotherAddress: the payment request of an
// order paid under one spelling of the merchant's address, fetched again
// under another once it has expired, was refused as expired (ErrExpired:
// "the order cannot be paid") before the wallet looked for its receipt;
// the order is paid, and the receipt kept says so. Its hash matching a
// kept receipt is the request already checked when it was paid.
func TestPayAgainAfterExpiryUnderAnotherAddress(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.25"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour)
	_, err = w.Pay(ctx, f.bankc, f.shop, "127.0.0.1:shop", o.ID, nil)
	var ap *wallet.AlreadyPaidError
	if !errors.As(err, &ap) || !bytes.Equal(ap.Receipt.Encode(), rcpt.Encode()) {
		t.Fatalf("paying again, expired, under another address: %v; want an *AlreadyPaidError with the kept receipt", err)
	}
}

// lostAnswer is a merchant whose answers to Pay are lost.
type lostAnswer struct{ pb.MerchantClient }

func (lostAnswer) Pay(context.Context, *pb.PayRequest, ...grpc.CallOption) (*pb.PayResponse, error) {
	return nil, status.Error(codes.Unavailable, "connection reset")
}

// TestPayPendingUnderAnotherAddress: a payment left pending under one
// spelling of the merchant's address (its answer lost), run again under
// another, was planned as a new one, the user asked to confirm it and
// change made for it (a swap, and its fee), before the pending one was
// found by its request and sent again. It is found as soon as the
// request is known: nothing is asked or swapped, and the pending coins
// pay.
func TestPayPendingUnderAnotherAddress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.25"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, lostAnswer{f.shop}, "shop", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("payment whose answer was lost: %v, want ErrPending", err)
	}
	asked := false
	if _, err := w.Pay(ctx, f.bankc, f.shop, "127.0.0.1:shop", o.ID, func(*wallet.Offer) error { asked = true; return nil }); err != nil || asked {
		t.Fatalf("paying again under another address: %v (asked to confirm: %v); want the pending payment sent again, unasked", err, asked)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if bal.Fresh.String() != "EUR:0.75" || !bal.Pending.IsZero() {
		t.Fatalf("fresh %s, pending %s; want EUR:0.75, none pending", bal.Fresh, bal.Pending)
	}
}
