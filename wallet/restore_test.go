package wallet_test

import (
	"context"
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
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// TestRestore: a wallet that withdrew, paid, swapped and returned coins is
// deleted; a wallet restored from its seed alone holds exactly the unspent
// value, pays with it, and a second restore changes nothing.
func TestRestore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct := f.fund(t, w, "EUR:20.00")
	for _, amount := range []string{"EUR:5.12", "EUR:0.77"} {
		if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount(amount), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, amount := range []string{"EUR:0.03", "EUR:0.03", "EUR:2.99"} {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount(amount), "before the loss", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
			t.Fatalf("pay %s: %v", amount, err)
		}
	}
	if _, err := w.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Return(ctx, f.bankc, ecash.MustParseAmount("EUR:0.10")); err != nil {
		t.Fatal(err)
	}
	before, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	seed := w.Seed()
	w.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	restored := t.TempDir()
	start := time.Now()
	var calls int
	r, rep, err := wallet.Restore(ctx, restored, seed, f.bankc, wallet.Options{}, func(scanned uint64, found int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("restore: %+v in %d progress steps, %v", rep, calls, time.Since(start))
	if rep.Fresh != before.Fresh || rep.Added != rep.Found || rep.Spent == 0 || calls == 0 {
		t.Fatalf("restored %+v, want fresh %s as before the loss", rep, before.Fresh)
	}
	after, _ := r.Balance()
	if after.Fresh != before.Fresh || !after.Pending.IsZero() {
		t.Fatalf("restored balance fresh %s pending %s, want %s", after.Fresh, after.Pending, before.Fresh)
	}
	if err := r.SetAccount(acct); err != nil {
		t.Fatal(err)
	}
	f.checkConservation(t, r)

	// A second restore on the same directory adds nothing and keeps the value.
	r.Close()
	r2, rep2, err := wallet.Restore(ctx, restored, seed, f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if rep2.Added != 0 || rep2.Found != rep.Found || rep2.Fresh != before.Fresh {
		t.Fatalf("second restore %+v, first %+v", rep2, rep)
	}
	// The restored coins spend, new withdrawals use new indices, and every
	// coin of the old life stays spent.
	if _, err := r2.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("withdraw after restore: %v", err)
	}
	bal, _ := r2.Balance()
	o, _ := f.merchant.CreateOrder(bal.Fresh, "all of it", 0)
	if _, err := r2.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("paying everything restored: %v", err)
	}
	f.checkConservation(t, r2)
	r2.Close()

	// Another seed cannot restore into this wallet.
	other := make([]byte, 32)
	if _, _, err := wallet.Restore(ctx, restored, other, f.bankc, wallet.Options{}, nil); !errors.Is(err, wallet.ErrExists) {
		t.Errorf("restore with another seed into the wallet: %v, want ErrExists", err)
	}
}

// failingIssuedBank fails the failAt-th IssuedSignatures call, as a
// connection lost in the middle of a restore.
type failingIssuedBank struct {
	pb.BankClient
	calls, failAt atomic.Int32
}

func (b *failingIssuedBank) IssuedSignatures(ctx context.Context, in *pb.IssuedSignaturesRequest, opts ...grpc.CallOption) (*pb.IssuedSignaturesResponse, error) {
	if b.calls.Add(1) == b.failAt.Load() {
		return nil, status.Error(codes.Unavailable, "connection lost (simulated)")
	}
	return b.BankClient.IssuedSignatures(ctx, in, opts...)
}

// TestInterruptedRestore: a restore cut short leaves a wallet that opens
// but reserves no planchet index (its seed's used indices are not all
// known: a reused one mints a coin again, debited twice) until a restore
// finishes; then it withdraws, and money is conserved.
func TestInterruptedRestore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct := f.fund(t, w, "EUR:20.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	seed := w.Seed()
	w.Close()
	os.RemoveAll(dir)

	restored := t.TempDir()
	cut := &failingIssuedBank{BankClient: f.bankc}
	cut.failAt.Store(3)
	if _, _, err := wallet.Restore(ctx, restored, seed, cut, wallet.Options{}, nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("restore over a lost connection: %v", err)
	}
	r, err := wallet.Open(restored, wallet.Options{})
	if err != nil {
		t.Fatalf("open after an interrupted restore: %v", err)
	}
	if err := r.SetAccount(acct); err != nil {
		t.Fatal(err)
	}
	before := f.balance(t, acct)
	if _, err := r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); !errors.Is(err, wallet.ErrRestoring) {
		t.Fatalf("withdrawal after an interrupted restore: %v, want ErrRestoring", err)
	}
	if after := f.balance(t, acct); after != before {
		t.Fatalf("the refused withdrawal moved %d", before-after)
	}
	r.Close()

	r, rep, err := wallet.Restore(ctx, restored, seed, f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatalf("restore again: %v", err)
	}
	defer r.Close()
	if rep.Fresh != ecash.MustParseAmount("EUR:2.00") {
		t.Fatalf("restored %s, want EUR:2.00", rep.Fresh)
	}
	if err := r.SetAccount(acct); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatalf("withdrawal after the restore finished: %v", err)
	}
	if b, err := r.Balance(); err != nil || b.Fresh != ecash.MustParseAmount("EUR:4.00") {
		t.Fatalf("balance %+v, %v; want EUR:4.00 fresh", b, err)
	}
	f.checkConservation(t, r)
}

// busyBank refuses its first refusals first-round calls for going too fast.
type busyBank struct {
	pb.BankClient
	refusals atomic.Int32
}

func (b *busyBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	if b.refusals.Add(-1) >= 0 {
		return nil, status.Error(codes.ResourceExhausted, "too many requests from this address; slow down")
	}
	return b.BankClient.PrepareWithdraw(ctx, in, opts...)
}

// TestRestorePaced: a bank refusing a restore's calls for its rate (they
// are large, and charged by their items) slows the restore down; it still
// finds every coin.
func TestRestorePaced(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:5.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.23"), nil); err != nil {
		t.Fatal(err)
	}
	seed := w.Seed()
	w.Close()
	busy := &busyBank{BankClient: f.bankc}
	busy.refusals.Store(2)
	r, rep, err := wallet.Restore(ctx, t.TempDir(), seed, busy, wallet.Options{}, nil)
	if err != nil {
		t.Fatalf("restore from a busy bank: %v", err)
	}
	defer r.Close()
	if rep.Fresh != ecash.MustParseAmount("EUR:1.23") || busy.refusals.Load() >= 0 {
		t.Fatalf("restored %s after %d refusals left; want EUR:1.23, none left", rep.Fresh, busy.refusals.Load())
	}
}

// putBack copies a closed wallet's directory aside, as a backup of it.
func putBack(t *testing.T, dir string) string {
	t.Helper()
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return backup
}

// TestBackupPutBackWithdraws: a wallet directory is copied, the wallet
// withdraws and pays, the device is lost and the copy is put back. Its
// planchet counter is the copy's, so its next withdrawal derives the lost
// wallet's planchets again (with RSA, the bank's default cipher, the same
// blinded messages). The bank refuses them (it signed them before); the
// wallet scans forward as a restore does, takes in the lost wallet's coins
// (those it spent as spent), moves its counter past them and withdraws
// with new planchets: the account is debited once, for coins that pay.
func TestBackupPutBackWithdraws(t *testing.T) {
	ctx := context.Background()
	var specs []bank.DenomSpec
	for v := uint64(1); v <= 64; v *= 2 {
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherRSA})
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, k, time.Now)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acct := f.fund(t, w, "EUR:10.00")
	if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	w.Close()
	backup := putBack(t, dir)

	// The wallet's life after the copy: it withdraws and spends some.
	w, err = wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := f.balance(t, acct)
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	debit := before - f.balance(t, acct)
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.50"), nil); err != nil {
		t.Fatal(err)
	}
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "before the loss", 0)
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	lost, _ := w.Balance()
	w.Close() // the device is lost

	r, err := wallet.Open(backup, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before = f.balance(t, acct)
	if _, err := r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("withdrawal from the wallet put back: %v", err)
	}
	if debited := before - f.balance(t, acct); debited != debit {
		t.Fatalf("the withdrawal from the wallet put back debited %d, want %d", debited, debit)
	}
	bal, _ := r.Balance()
	if want := lost.Fresh.Value + 100; bal.Fresh.Value != want {
		t.Fatalf("the wallet put back holds %s, want the lost wallet's %s and the new EUR:1.00", bal.Fresh, lost.Fresh)
	}
	f.checkConservation(t, r)
	o2, _ := f.merchant.CreateOrder(bal.Fresh, "after the loss: all of it", 0)
	if _, err := r.Pay(ctx, f.bankc, f.shop, "shop", o2.ID, nil); err != nil {
		t.Fatalf("paying with what the wallet put back holds: %v", err)
	}
	f.checkConservation(t, r)
}

// TestBackupPutBackSwaps: as TestBackupPutBackWithdraws, the refused
// request a swap (CS outputs, whose first round and blinding are
// deterministic too): the wallet takes in the lost wallet's coins and
// swaps with new planchets.
func TestBackupPutBackSwaps(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:10.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	backup := putBack(t, dir)

	w, err = wallet.Open(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.63"), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()

	r, err := wallet.Open(backup, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Outputs of 0.01 to 0.32, at the indices the lost wallet's
	// withdrawal of EUR:0.63 took.
	if _, err := r.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.63")); err != nil {
		t.Fatalf("swap from the wallet put back: %v", err)
	}
	bal, _ := r.Balance()
	if bal.Fresh.String() != "EUR:2.63" {
		t.Fatalf("the wallet put back holds %s, want EUR:2.63 (its own and the lost wallet's)", bal.Fresh)
	}
	f.checkConservation(t, r)
}

// TestRestoreAfterFailedFirstRounds: a withdrawal whose CS first round
// (PrepareWithdraw) fails — the bank rate-limits it, or is unreachable —
// has already reserved its planchet indices, and gives them back: a dozen
// such failures in a row used to leave a hole wider than RestoreGap, which
// hid every coin withdrawn after it from Restore (the account debited,
// the restored wallet without the coins).
func TestRestoreAfterFailedFirstRounds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:100.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	busy := &busyBank{BankClient: f.bankc}
	busy.refusals.Store(14)
	for i := 0; i < 14; i++ {
		// EUR:60.00 is 24 coins, some of them CS: 14 tries reserve 336 indices.
		if _, err := w.Withdraw(ctx, busy, ecash.MustParseAmount("EUR:60.00"), nil); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("try %d: %v, want the bank's rate limit", i, err)
		}
	}
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	before, _ := w.Balance()
	seed := w.Seed()
	w.Close()
	os.RemoveAll(dir)

	r, rep, err := wallet.Restore(ctx, t.TempDir(), seed, f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("report %+v, before %s", rep, before.Fresh)
	if rep.Fresh != before.Fresh {
		t.Fatalf("restored %s from the seed, the wallet held %s (the bank debited it all)", rep.Fresh, before.Fresh)
	}
}

// TestRestoreCollectsRefunds: a merchant refunds part of a payment; the
// refund is credit on the payment's coins at the bank, which the wallet
// collects by the receipts it keeps. A wallet restored from its seed has
// the coins (spent) but no receipts: the restore fetches the receipt of
// each payment whose coins have credit (CoinsSpent names the payment), and
// CollectRefunds collects it, checked against the refund receipts, once.
func TestRestoreCollectsRefunds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:10.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:2.00"), "a lamp", 0)
	rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.merchant.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	seed := w.Seed()
	w.Close()
	os.RemoveAll(dir)

	r, _, err := wallet.Restore(ctx, t.TempDir(), seed, f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.CollectRefunds(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	bal, _ := r.Balance()
	req := &pb.CoinsSpentRequest{}
	for _, id := range rcpt.Coins {
		req.CoinIds = append(req.CoinIds, id[:])
	}
	if cs, err := f.bankc.CoinsSpent(ctx, req); err == nil {
		t.Logf("the bank holds refund credit %v on the payment's coins", cs.RefundCredit)
	}
	if res.Value.String() != "EUR:1.00" || res.Payments != 1 || bal.Fresh.String() != "EUR:1.00" {
		t.Fatalf("restored wallet collected %s of refunds (%d payments) and holds %s; the merchant refunded EUR:1.00 to its coins", res.Value, res.Payments, bal.Fresh)
	}
	f.checkConservation(t, r)
	if again, err := r.CollectRefunds(ctx, f.bankc); err != nil || !again.Value.IsZero() {
		t.Fatalf("collecting again: %+v, %v", again, err)
	}
}
