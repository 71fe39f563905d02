package bank_test

import (
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
	shop, mkey := e.shop()
	deposit := func(index uint64, created, expires time.Time) error {
		t.Helper()
		_, body, sig, sealed, _, _ := e.sealedPayment(shop, mkey, index, e.cheap, created, expires)
		_, _, err := e.b.Deposit(t.Context(), body, sig, sealed)
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
