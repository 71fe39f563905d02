package wallet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// notFoundBank answers DepositStatus with NotFound: the bank never took the payment.
type notFoundBank struct{ pb.BankClient }

func (notFoundBank) DepositStatus(context.Context, *pb.DepositStatusRequest, ...grpc.CallOption) (*pb.DepositResponse, error) {
	return nil, status.Error(codes.NotFound, "no such deposit")
}

// TestPendingPaymentOfALongRequestSettles: a wallet written before e1384a9 paid a
// request living 60 days (nothing bounded a request's life then) and the
// merchant never answered: the payment is pending in its store. Long after
// the request expired, the bank has no deposit, so reconcilePayments
// (Recover) should release the coins. It now fails on decoding the stored
// request, every time, and the coins stay pending for ever (and every later
// pending payment and the revealed-coin swap in Recover are never reached).
func TestPendingPaymentOfALongRequestSettles(t *testing.T) {
	created := time.Unix(1_800_000_000, 0).UTC()
	now := created.Add(90 * 24 * time.Hour)
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pub, _, _ := ed25519.GenerateKey(nil)
	pr := &ecash.PaymentRequest{MerchantAccount: 1001, MerchantPub: pub, OrderID: "o1",
		Amount: ecash.MustParseAmount("EUR:0.02"), CreatedAt: created, ExpiresAt: created.Add(60 * 24 * time.Hour)}
	h := pr.Hash()
	c := coinRecord{Index: 7, Coin: ecash.Coin{Pub: bytes.Repeat([]byte{1}, 32), Sig: []byte{2}},
		Value: ecash.MustParseAmount("EUR:0.02"), State: CoinPending, Payment: h}
	pp := &pendingPayment{Merchant: "shop:443", OrderID: "o1", Request: pr.Body(), Sealed: []byte{1}, Coins: []ecash.Hash{c.Coin.ID()}}
	if err := w.db.Set(coinKey(c.Coin.ID()), c.encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := w.db.Set(paymentKey(h), pp.encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := w.reconcilePayments(context.Background(), notFoundBank{}, nil); err != nil {
		t.Fatalf("reconcilePayments: %v", err)
	}
	raw, err := get(w.db, coinKey(c.Coin.ID()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCoinRecord(raw)
	if err != nil || got.State != CoinFresh {
		t.Fatalf("coin state %d (%v), want fresh again", got.State, err)
	}
}
