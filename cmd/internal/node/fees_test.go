package node

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// feeKeys are CS keys of EUR:0.01 to EUR:5.12 (powers of two); coins of
// EUR:0.64 and up charge one cent on each of withdraw, deposit, swap and
// refund, smaller ones nothing.
func feeKeys(t *testing.T) []byte {
	t.Helper()
	var specs []bank.DenomSpec
	cent := ecash.Amount{Currency: "EUR", Value: 1}
	for v := uint64(1); v <= 512; v *= 2 {
		s := bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS}
		if v >= 64 {
			s.Fees = ecash.Fees{Withdraw: cent, Deposit: cent, Swap: cent, Refund: cent}
		}
		specs = append(specs, s)
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), bank.KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFeesCharged runs a wallet through withdraw, pay (with change), swap,
// refund and return at a bank whose larger coins charge fees: each fee is
// charged exactly, to the minor unit, booked to the fee account, shown to
// the payer before paying, and the merchant is credited exactly its price.
// The audit at cleanup checks every entry's fee against the key set.
func TestFeesCharged(t *testing.T) {
	ctx := context.Background()
	e := startEnvKeys(t, "", feeKeys(t))
	bankc := e.dialBank()
	shop := e.startMerchant("shop")
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:20.00")
	acct, _ := w.Account()
	fee := func(kind func(ecash.Fees) ecash.Amount, coins []ecash.Coin) int64 {
		ids := make([]ecash.Hash, len(coins))
		for i, c := range coins {
			ids[i] = c.ID()
		}
		_, f, err := w.CoinFees(ids, kind)
		if err != nil {
			t.Fatal(err)
		}
		return int64(f.Value)
	}
	withdrawFee := func(f ecash.Fees) ecash.Amount { return f.Withdraw }
	depositFee := func(f ecash.Fees) ecash.Amount { return f.Deposit }

	coins, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), nil)
	if err != nil {
		t.Fatal(err)
	}
	wf := fee(withdrawFee, coins)
	if wf == 0 {
		t.Fatal("no coin of the withdrawal charged a fee: the test would show nothing")
	}
	if got := e.raw(acct); got != 2000-1000-wf {
		t.Errorf("account holds %d after withdrawing 1000 with %d of fees, want %d", got, wf, 2000-1000-wf)
	}
	if got := e.raw(bank.AccountFees); got != wf {
		t.Errorf("fee account %d, want %d", got, wf)
	}

	// Pay EUR:3.50: the offer shows the fees; the merchant gets 3.50.
	order := shop.order(t, "EUR:3.50")
	var offer *wallet.Offer
	rcpt, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, func(o *wallet.Offer) error { offer = o; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if offer == nil || offer.Fee.IsZero() {
		t.Fatalf("the offer showed no fee: %+v", offer)
	}
	if got := e.raw(shop.account); got != 350 {
		t.Errorf("merchant credited %d, want exactly 350", got)
	}
	value, df, err := w.CoinFees(rcpt.Coins, depositFee)
	if err != nil {
		t.Fatal(err)
	}
	if value.Value-df.Value != 350 {
		t.Errorf("the paying coins are worth %s with %s of deposit fees: they do not pay 3.50 exactly", value, df)
	}
	feesSoFar := e.raw(bank.AccountFees)
	if feesSoFar < wf+int64(df.Value) {
		t.Errorf("fee account %d, want at least withdraw %d + deposit %d", feesSoFar, wf, df.Value)
	}
	if got := int64(offer.Fee.Value); got != feesSoFar-wf {
		t.Errorf("the offer quoted %d of fees, the bank charged %d", got, feesSoFar-wf)
	}

	// Small payments soon need change: a swap first, whose fee the offer
	// quotes too. Each quote is what the bank charges.
	changed := false
	for i := 0; i < 4; i++ {
		feesBefore := e.raw(bank.AccountFees)
		merchantBefore := e.raw(shop.account)
		var o *wallet.Offer
		if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, shop.order(t, "EUR:0.70"), func(x *wallet.Offer) error { o = x; return nil }); err != nil {
			t.Fatal(err)
		}
		if got := e.raw(bank.AccountFees) - feesBefore; got != int64(o.Fee.Value) {
			t.Errorf("payment %d: quoted %s of fees (change %v), charged %d", i, o.Fee, o.Change, got)
		}
		if got := e.raw(shop.account) - merchantBefore; got != 70 {
			t.Errorf("payment %d: merchant credited %d, want 70", i, got)
		}
		changed = changed || o.Change
	}
	if !changed {
		t.Error("no payment needed change: the change path with fees went untested")
	}
	// The merchant finds each deposit in the log crediting its account its
	// receipt's total: the entry's coins' value less their deposit fees.
	if mrep, err := shop.admin.VerifyLog(ctx, &pb.VerifyLogRequest{}); err != nil || mrep.Verified != 5 || mrep.Waiting != 0 {
		t.Fatalf("the merchant's check of its deposits: %+v, %v; want all 5 verified", mrep, err)
	}
	// So does the wallet, for the deposits it paid, against the merchant
	// and the total each receipt names.
	if rep, err := w.VerifyLog(ctx, bankc, e.dialLog()); err != nil || rep.Verified < 5 || rep.Waiting != 0 {
		t.Fatalf("the wallet's check of its payments: %+v, %v; want its 5 deposits (and more) verified", rep, err)
	}

	// A refund of EUR:1.00 costs the merchant the refund fees of the coins
	// it touches; the wallet collects the full EUR:1.00 (credit pays no
	// swap fee).
	before, _ := w.Balance()
	r, err := shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: "EUR:1.00"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ecash.DecodeRefundReceipt(r.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.raw(shop.account); got != 350+4*70-100-int64(rc.Fee.Value) {
		t.Errorf("merchant holds %d after refunding 100 with %s of fees", got, rc.Fee)
	}
	got, err := w.CollectRefunds(ctx, bankc)
	if err != nil || got.Value.String() != "EUR:1.00" {
		t.Fatalf("collected %+v, %v", got, err)
	}
	after, _ := w.Balance()
	if after.Fresh.Value != before.Fresh.Value+100 {
		t.Errorf("wallet %s after collecting EUR:1.00, was %s", after.Fresh, before.Fresh)
	}

	// A swap buys the coins' value less their swap fees.
	feesBefore := e.raw(bank.AccountFees)
	swapped, err := w.Swap(ctx, bankc, mustAmount(t, "EUR:2.56"))
	if err != nil {
		t.Fatal(err)
	}
	var newValue uint64
	for _, c := range swapped {
		d, _ := e.ks.Denomination(c.Denom)
		newValue += d.Value.Value
	}
	swapFees := e.raw(bank.AccountFees) - feesBefore
	if int64(newValue)+swapFees < 256 || swapFees == 0 {
		t.Errorf("swapped EUR:2.56 (and any change) into %d with %d of fees", newValue, swapFees)
	}

	// Return EUR:1.00 to the account: it is credited exactly EUR:1.00.
	acctBefore := e.raw(acct)
	if _, err := w.Return(ctx, bankc, mustAmount(t, "EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	if got := e.raw(acct); got != acctBefore+100 {
		t.Errorf("account %d after a return of 100, was %d", got, acctBefore)
	}

	t.Logf("fees: withdraw %d, pay %s (deposit %s), refund %s, swap %d; fee account %d", wf, offer.Fee, df, rc.Fee, swapFees, e.raw(bank.AccountFees))

	// What is left adds up: the wallet's fresh coins are exactly what
	// circulates (one wallet), and every balance sums to zero.
	bal, _ := w.Balance()
	if out := e.raw(bank.AccountOutstanding); int64(bal.Fresh.Value) != out {
		t.Errorf("outstanding %d, the wallet holds %s", out, bal.Fresh)
	}
	if sum := e.raw(bank.AccountFunding) + e.raw(bank.AccountOutstanding) + e.raw(bank.AccountFees) + e.raw(acct) + e.raw(shop.account); sum != 0 {
		t.Errorf("the ledger sums to %d", sum)
	}
}
