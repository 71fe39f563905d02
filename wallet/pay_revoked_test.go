package wallet_test

import (
	"context"
	"errors"
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

// revokeValue revokes, live, the current denomination of value v (in
// cents) at the fixture's bank, and returns it.
func revokeValue(t *testing.T, f *fixture, k *bank.Keys, ks *ecash.KeySet, v uint64, now time.Time) ecash.Denomination {
	t.Helper()
	kf := k
	f.bank.SetKeyFileEditor(func(change func(*bank.Keys) error) error {
		next := *kf
		next.Denoms = append([]bank.DenomKey(nil), kf.Denoms...)
		if err := change(&next); err != nil {
			return err
		}
		kf = &next
		return nil
	})
	for _, d := range ks.Denominations {
		if d.Value.Value == v && d.CanWithdraw(now) == nil {
			got, err := f.bank.RevokeDenomination(context.Background(), d.ID.String())
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
	}
	t.Fatalf("no denomination of %d cents", v)
	return ecash.Denomination{}
}

// TestPayRevokedCoinEnds: a wallet whose key set (younger than
// KeySetMaxAge) does not show a revocation pays with a coin of the revoked
// denomination; the bank refuses the deposit. The payment can never go
// through, so it must end, not stay pending for a retry that resends the
// same coins: the error names the revocation, the coins are released, and
// paying the order again picks no revoked coin.
func TestPayRevokedCoinEnds(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revoked := revokeValue(t, f, k, ks, 2, time.Now())
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	var re *wallet.RevokedError
	if !errors.As(err, &re) || errors.Is(err, wallet.ErrPending) || !errors.Is(err, ecash.ErrDenominationRevoked) {
		t.Fatalf("paying with a revoked coin: %v; want a *wallet.RevokedError, not pending", err)
	}
	if len(re.Denominations) != 1 || re.Denominations[0].ID != revoked.ID {
		t.Fatalf("RevokedError names %v, want the revoked EUR:0.02 only", re.Denominations)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:1.00" {
		t.Fatalf("after the refusal: fresh %s, pending %s; want EUR:1.00 fresh, nothing pending", bal.Fresh, bal.Pending)
	}
	// The key set the wallet now holds shows the revocation, and paying
	// again picks other coins.
	if now, _ := w.KeySet(); now == nil || !func() bool { d, _ := now.Denomination(revoked.ID); return d.Revoked }() {
		t.Fatal("the wallet's key set does not show the revocation")
	}
	// The bank takes no revoked coin, so this payment going through shows
	// that none was picked again.
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("paying again: %v", err)
	}
	// The revoked coin, kept out of that payment, pays back by recoup.
	rep, err := w.Recoup(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Credited.String() != "EUR:0.02" || len(rep.Errors) > 0 {
		t.Fatalf("recoup: credited %s, errors %v; want the revoked EUR:0.02 coin credited", rep.Credited, rep.Errors)
	}
}

// TestRecoupReissueWithoutReplacementKey: a revoked coin that came from a
// swap is recouped by re-issue, into coins of live keys. With the revoked
// key the only one of its value, there is none yet: the error must say so
// (ErrNoReplacementKey), not that a payment cannot be made exactly, and
// the coin must stay in the wallet for a later recoup.
func TestRecoupReissueWithoutReplacementKey(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	// A coin of EUR:0.02 swapped for two of EUR:0.01.
	if _, err := w.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.02")); err != nil {
		t.Fatal(err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, f, k, ks, 1, time.Now())
	rep, err := w.Recoup(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) == 0 {
		t.Fatalf("recoup of swapped coins without a live key of their value: no error (%+v)", rep)
	}
	for _, e := range rep.Errors {
		if !errors.Is(e, wallet.ErrNoReplacementKey) {
			t.Errorf("recoup error %v; want wallet.ErrNoReplacementKey", e)
		}
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if want := 100 - rep.Credited.Value; bal.Fresh.Value != want {
		t.Errorf("fresh %s after recoup credited %s; want the swapped coins kept (%d cents)", bal.Fresh, rep.Credited, want)
	}
}

// claimsRevoked answers every Pay with the bank's revocation refusal, as a
// merchant relaying it (or lying) would.
type claimsRevoked struct{ pb.MerchantClient }

func (claimsRevoked) Pay(context.Context, *pb.PayRequest, ...grpc.CallOption) (*pb.PayResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, ecash.ErrDenominationRevoked.Error()+"; recoup its coins")
}

// noStatus cannot answer DepositStatus.
type noStatus struct{ pb.BankClient }

func (noStatus) DepositStatus(context.Context, *pb.DepositStatusRequest, ...grpc.CallOption) (*pb.DepositResponse, error) {
	return nil, status.Error(codes.Unavailable, "the bank is restarting")
}

// TestPayDepositedBeforeRevocationKeepsReceipt: the payment was deposited
// (the merchant's answer lost, the bank not reachable to ask), then the denomination of one of its coins
// was revoked, and the retry meets a refusal naming the revocation. The
// wallet ends a payment only if the bank says it was not deposited: here
// it asks, and must take the bank's receipt, not release coins the bank
// has taken (which it would then spend again).
func TestPayDepositedBeforeRevocationKeepsReceipt(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", 0)
	if err != nil {
		t.Fatal(err)
	}
	lossy := &lossyMerchant{MerchantClient: f.shop}
	lossy.lose.Store(1)
	if _, err := w.Pay(ctx, noStatus{f.bankc}, lossy, "shop", o.ID, nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("payment with its answer lost: %v, want ErrPending", err)
	}
	revoked := revokeValue(t, f, k, ks, 2, time.Now())
	rcpt, err := w.Pay(ctx, f.bankc, claimsRevoked{f.shop}, "shop", o.ID, nil)
	if err != nil || rcpt == nil {
		t.Fatalf("retry after the revocation: %v; want the bank's receipt", err)
	}
	paidRevoked := false
	for _, id := range rcpt.Coins {
		if v, _, err := w.CoinFees([]ecash.Hash{id}, func(f ecash.Fees) ecash.Amount { return f.Deposit }); err == nil && v == revoked.Value {
			paidRevoked = true
		}
	}
	if !paidRevoked {
		t.Fatal("the payment holds no coin of the revoked value: the test checks nothing")
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:0.94" {
		t.Fatalf("fresh %s, pending %s; want EUR:0.94 fresh (the EUR:0.06 paid), nothing pending", bal.Fresh, bal.Pending)
	}
}

// TestPayRevokedCoinOrderPaidOtherwise: the order was paid already, with
// other coins (another wallet's, or a copy of this one), and this wallet's
// attempt holds a coin whose denomination was revoked since. The bank's
// word is that the order is paid: the wallet must say so, not that its
// payment was refused for the revocation and nothing was paid.
func TestPayRevokedCoinOrderPaidOtherwise(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	first := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", 0)
	if err != nil {
		t.Fatal(err)
	}
	paid, err := first.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, f, k, ks, 2, time.Now())
	// First as a merchant relaying the refusal of the revoked coin (a bank
	// may check that first), then as the bank answers here: the order is
	// paid with other coins.
	for i, shop := range []pb.MerchantClient{claimsRevoked{f.shop}, f.shop} {
		_, err = w.Pay(ctx, f.bankc, shop, "shop", o.ID, nil)
		var po *wallet.PaidOtherwiseError
		if !errors.As(err, &po) || errors.Is(err, ecash.ErrDenominationRevoked) || errors.Is(err, wallet.ErrPending) {
			t.Fatalf("paying an order paid with other coins: %v; want a *wallet.PaidOtherwiseError, not a revocation", err)
		}
		if po.Receipt == nil || po.Receipt.PaymentHash != paid.PaymentHash || !po.Receipt.DepositedAt.Equal(paid.DepositedAt) {
			t.Fatalf("PaidOtherwiseError carries receipt %+v, want the first wallet's", po.Receipt)
		}
		if i == 0 && (len(po.Revoked) != 1 || po.Revoked[0].Value.Value != 2) {
			t.Fatalf("PaidOtherwiseError names revoked %v, want the EUR:0.02 coin's denomination, for recoup", po.Revoked)
		}
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:1.00" {
		t.Fatalf("fresh %s, pending %s; want EUR:1.00 fresh (nothing paid by this wallet), nothing pending", bal.Fresh, bal.Pending)
	}
}
