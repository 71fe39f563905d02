package bank_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// TestDepositRefusesRequestsOutOfTime: a new deposit is refused for a
// payment request that lives longer than MaxPaymentLifetime or was created
// ahead of the bank's clock (either would let a merchant hold a wallet's
// coins pending for as long as it chose), and accepted for one of the
// longest life made now.
func TestDepositRefusesRequestsOutOfTime(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	mpub, mkey, _ := ed25519.GenerateKey(rand.Reader)
	shop, err := e.b.OpenAccount(ctx, "shop", mpub, true)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := e.b.KeySet()
	deposit := func(index uint64, created, expires time.Time) error {
		t.Helper()
		coin, ps := e.coin(index, e.cheap)
		pr := &ecash.PaymentRequest{BankID: ks.BankID(), MerchantAccount: shop, MerchantPub: mpub, OrderID: "ord-1",
			Amount: e.cheap.Value, SummaryHash: ecash.HashOf([]byte("thing")), CreatedAt: created, ExpiresAt: expires}
		p, err := ecash.NewPayment(pr, []ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{e.cheap.Value}, created)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := ecash.SealPayment(ks.HPKEPub, pr, p)
		if err != nil {
			t.Fatal(err)
		}
		body := pr.Body()
		_, _, err = e.b.Deposit(ctx, body, ecash.SignBody(mkey, body), sealed)
		return err
	}
	if err := deposit(1, e.now, e.now.Add(ecash.MaxPaymentLifetime+time.Millisecond)); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("a request living past MaxPaymentLifetime: %v, want ErrMalformed", err)
	}
	if err := deposit(2, e.now.Add(ecash.MaxClockSkew+time.Second), e.now.Add(time.Hour)); !errors.Is(err, bank.ErrBadTimestamp) {
		t.Errorf("a request created ahead of the bank's clock: %v, want ErrBadTimestamp", err)
	}
	if err := deposit(3, e.now, e.now.Add(ecash.MaxPaymentLifetime)); err != nil {
		t.Errorf("a request of the longest life, made now: %v", err)
	}
}
