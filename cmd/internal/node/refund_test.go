package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// TestRefundThenSwapThenSpend: a merchant refunds a payment in two parts;
// each time the wallet collects the refund as fresh coins and finally
// spends them. The payment mixes CS and RSA coins, so refunds of both
// ciphers are exercised. Balances are exact to the minor unit throughout,
// refunds beyond the payment or of paid-out money are refused, and the
// audit at cleanup replays it all.
func TestRefundThenSwapThenSpend(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	var shopTr, walletTr safeBuffer
	shop := e.startMerchantTranscript("shop", &shopTr)
	w := e.newWalletWith(filepath.Join(t.TempDir(), "w"), "EUR:10.00", wallet.Options{Now: e.clock.Now, Transcript: &walletTr})
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), nil); err != nil {
		t.Fatal(err)
	}
	order := shop.order(t, "EUR:3.50")
	if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil); err != nil {
		t.Fatal(err)
	}
	fresh := func(want string) {
		t.Helper()
		if bal, err := w.Balance(); err != nil || bal.Fresh.String() != want {
			t.Fatalf("wallet balance %v (%v), want %s", bal.Fresh, err, want)
		}
	}
	fresh("EUR:6.50")

	refund := func(amount string) (*pb.RefundOrderResponse, error) {
		return shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: amount})
	}
	r, err := refund("EUR:1.25")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ecash.DecodeRefundReceipt(r.Receipt)
	if err != nil || rc.Verify(e.ks, nil) != nil {
		t.Fatalf("refund receipt: %v", err)
	}
	if rc.Total.String() != "EUR:1.25" || r.TotalRefunded != "EUR:1.25" {
		t.Errorf("refunded %s, %s in all; want EUR:1.25", rc.Total, r.TotalRefunded)
	}
	if got := e.balance(shop.account); got != "EUR:2.25" {
		t.Errorf("merchant balance %s after the refund, want EUR:2.25", got)
	}
	got, err := w.CollectRefunds(ctx, bankc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Payments != 1 || got.Value.String() != "EUR:1.25" || got.Coins != len(rc.Coins) {
		t.Errorf("collected %+v, want EUR:1.25 from %d coins of one payment", got, len(rc.Coins))
	}
	fresh("EUR:7.75")
	if again, err := w.CollectRefunds(ctx, bankc); err != nil || again.Payments != 0 {
		t.Errorf("second collection: %+v, %v; want nothing", again, err)
	}

	// The rest of the payment, then nothing more.
	if r, err = refund("EUR:2.25"); err != nil || r.TotalRefunded != "EUR:3.50" {
		t.Fatalf("second refund: %v, %v", r, err)
	}
	// The bank's refusal, relayed by the merchant with its reason.
	if _, err := refund("EUR:0.01"); status.Code(err) != codes.FailedPrecondition || bank.Reason(err) != "REFUND_EXCEEDS" {
		t.Errorf("refund beyond the payment: %v, reason %q; want FailedPrecondition, REFUND_EXCEEDS", err, bank.Reason(err))
	}
	if got, err := w.CollectRefunds(ctx, bankc); err != nil || got.Value.String() != "EUR:2.25" {
		t.Fatalf("second collection: %+v, %v", got, err)
	}
	fresh("EUR:10.00")
	if got := e.balance(shop.account); got != "EUR:0.00" {
		t.Errorf("merchant balance %s after refunding all, want EUR:0.00", got)
	}

	// The collected coins spend like any other.
	second := shop.order(t, "EUR:10.00")
	if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, second, nil); err != nil {
		t.Fatalf("paying with refunded value: %v", err)
	}
	fresh("EUR:0.00")

	// Money paid out is not refunded.
	if _, err := e.admin.Payout(ctx, &pb.PayoutRequest{Account: shop.account, Amount: "EUR:10.00", Reference: "payout 1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: second, Amount: "EUR:1.00"}); status.Code(err) != codes.FailedPrecondition || bank.Reason(err) != "INSUFFICIENT_FUNDS" {
		t.Errorf("refund of paid-out money: %v, reason %q; want FailedPrecondition, INSUFFICIENT_FUNDS", err, bank.Reason(err))
	}
	// The merchant's own refusal, with its reason.
	if _, err := shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: shop.order(t, "EUR:1.00"), Amount: "EUR:1.00"}); status.Code(err) != codes.FailedPrecondition || bank.Reason(err) != "ORDER_NOT_PAID" {
		t.Errorf("refund of an unpaid order: %v, reason %q; want FailedPrecondition, ORDER_NOT_PAID", err, bank.Reason(err))
	}

	// Both transcripts, refunds and credit swaps included, pass the
	// offline audit as complete transcripts.
	keys, err := auditcmd.NewKeySets(e.ks)
	if err != nil {
		t.Fatal(err)
	}
	for party, tr := range map[string]*safeBuffer{"wallet": &walletTr, "merchant": &shopTr} {
		rep, err := auditcmd.Verify(bytes.NewReader(tr.Bytes()), party, keys, auditcmd.Options{Complete: true})
		if err != nil || !rep.OK {
			for _, l := range rep.Lines {
				t.Log(l)
			}
			t.Fatalf("audit of the %s's transcript: %v, failures %d", party, err, rep.Failures)
		}
		if !bytes.Contains(tr.Bytes(), []byte(`"refund-receipt"`)) {
			t.Errorf("the %s's transcript records no refund receipt", party)
		}
	}
}

// TestRefundOfRevokedCoins: refund credit is the bank's record of money
// it owes, which a revocation does not take away. The payment's dearer
// denominations are revoked before the refund; the refund still takes the
// money from the merchant, and the wallet collects it as coins of the
// denominations still live, to the minor unit.
func TestRefundOfRevokedCoins(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	shop := e.startMerchant("shop")
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:10.00")
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), nil); err != nil {
		t.Fatal(err)
	}
	order := shop.order(t, "EUR:3.50")
	if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil); err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, d := range e.ks.Denominations {
		if d.Value.Value > 10 {
			if _, err := e.admin.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: d.ID.String()}); err != nil {
				t.Fatal(err)
			}
			revoked++
		}
	}
	if revoked == 0 {
		t.Fatal("no denomination above EUR:0.10 to revoke")
	}
	if _, err := shop.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: "EUR:1.00"}); err != nil {
		t.Fatalf("refund of a payment whose coins' denominations are revoked: %v", err)
	}
	if got := e.balance(shop.account); got != "EUR:2.50" {
		t.Errorf("merchant balance %s after the refund, want EUR:2.50", got)
	}
	if _, err := w.RefreshKeys(ctx, bankc); err != nil { // as a wallet does on the news of a revocation
		t.Fatal(err)
	}
	got, err := w.CollectRefunds(ctx, bankc)
	if err != nil {
		t.Fatalf("collecting the refund after the revocation: %v", err)
	}
	if got.Value.String() != "EUR:1.00" {
		t.Errorf("collected %s, want EUR:1.00", got.Value)
	}
	if bal, err := w.Balance(); err != nil || bal.Fresh.String() != "EUR:7.50" {
		t.Errorf("wallet balance %v (%v), want EUR:7.50", bal.Fresh, err)
	}
}

func merchantKey(t *testing.T, s *shop) ed25519.PrivateKey {
	t.Helper()
	k, err := merchant.LoadKey(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRefundRequests drives the bank's Refund directly: a replay gets the
// same receipt, and only the merchant that was paid, with its own key, may
// refund a payment.
func TestRefundRequests(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	shop, other := e.startMerchant("shop"), e.startMerchant("other")
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:5.00")
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:5.00"), nil); err != nil {
		t.Fatal(err)
	}
	order := shop.order(t, "EUR:2.00")
	rcpt, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := &ecash.RefundRequest{PaymentHash: rcpt.PaymentHash, MerchantAccount: shop.account, RefundID: 7, Amount: mustAmount(t, "EUR:0.50"), CreatedAt: e.clock.Now()}
	req.Sign(merchantKey(t, shop))
	first, err := bankc.Refund(ctx, &pb.RefundRequest{Request: req.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	again, err := bankc.Refund(ctx, &pb.RefundRequest{Request: req.Encode()})
	if err != nil || !bytes.Equal(again.Receipt, first.Receipt) || again.LogIndex != first.LogIndex {
		t.Fatalf("replay: %v, %v; want the same receipt", again, err)
	}
	if got := e.balance(shop.account); got != "EUR:1.50" {
		t.Errorf("merchant balance %s after a refund sent twice, want EUR:1.50", got)
	}

	forged := *req
	forged.RefundID = 8
	forged.Sign(merchantKey(t, other)) // the other merchant's key, on shop's account
	if _, err := bankc.Refund(ctx, &pb.RefundRequest{Request: forged.Encode()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("refund signed by another key: %v, want Unauthenticated", err)
	}
	stolen := *req
	stolen.MerchantAccount, stolen.RefundID = other.account, 9
	stolen.Sign(merchantKey(t, other))
	if _, err := bankc.Refund(ctx, &pb.RefundRequest{Request: stolen.Encode()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("refund of another merchant's payment: %v, want FailedPrecondition", err)
	}
	if _, err := bankc.Refund(ctx, &pb.RefundRequest{Request: []byte("junk")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("junk refund: %v, want InvalidArgument", err)
	}
	if got := e.balance(other.account); got != "EUR:0.00" {
		t.Errorf("other merchant's balance %s, want EUR:0.00", got)
	}
}
