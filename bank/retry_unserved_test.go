package bank_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// TestWithdrawRetryToReplicaWithoutDenomination: a retry of a committed
// withdrawal reaching a replica that does not serve its denomination (a
// key set another replica published, not yet here) was refused
// ErrUnknownDenomination, before the record was looked up (the debit it
// signs needs the denominations). Its wallet took the refusal for "nothing
// recorded", dropped the pending withdrawal and lost the coins it had paid
// for. It is told to retry (ErrNotServed, Unavailable).
func TestWithdrawRetryToReplicaWithoutDenomination(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 5, 100, nil)
	p, _, _ := e.planchet(0, e.dear.Denomination, e.dear.Private)
	w := &ecash.WithdrawRequest{Account: e.acct, CreatedAt: e.now, Planchets: []ecash.Planchet{p}}
	rand.Read(w.Nonce[:])
	ks, _ := e.b.KeySet()
	amount, err := ks.WithdrawAmount(w)
	if err != nil {
		t.Fatal(err)
	}
	body, sig := w.Body(), ecash.SignWithdraw(e.acctKey, w, amount)
	if _, err := e.b.Withdraw(t.Context(), body, sig); err != nil {
		t.Fatal(err) // committed; its answer lost on the way back
	}
	balance := e.balance()

	// The other replica, over the same store, serves only the cheap key.
	older := *e.keys
	older.Denoms = slices.DeleteFunc(slices.Clone(e.keys.Denoms), func(d bank.DenomKey) bool { return d.ID == e.dear.ID })
	replica := bank.New(e.s, &older, func() (now time.Time) { return e.now }, nil)
	_, err = replica.Withdraw(t.Context(), body, sig)
	if !errors.Is(err, bank.ErrNotServed) || bank.Definitive(bank.ToStatus(t.Context(), err, nil)) {
		t.Fatalf("retry of a committed withdrawal at a replica without its denomination: %v; want ErrNotServed, not a refusal", err)
	}
	// A request never committed is still refused.
	w.Nonce[0] ^= 1
	body2 := w.Body()
	if _, err := replica.Withdraw(t.Context(), body2, ecash.SignWithdraw(e.acctKey, w, amount)); !errors.Is(err, ecash.ErrUnknownDenomination) {
		t.Fatalf("new request for a denomination the replica does not serve: %v, want ErrUnknownDenomination", err)
	}
	// The bank that serves it answers the retry from its record.
	if _, err := e.b.Withdraw(t.Context(), body, sig); err != nil || e.balance() != balance {
		t.Fatalf("retry at the serving replica: %v, balance %d → %d", err, balance, e.balance())
	}
}

// refuseFails is a store that cannot record a withdraw refusal.
type refuseFails struct {
	*pebblestore.Store
	calls int
}

func (s *refuseFails) RefuseWithdrawal(ctx context.Context, op bank.RefuseWithdrawalOp) ([][]byte, error) {
	s.calls++
	return nil, bank.ErrStoreUnavailable
}

// TestRefusalUnsureWhenUnrecorded: a refusal is recorded under the
// request's hash before it is sent (a retry sent while its original
// commits must exclude it). When the store cannot record it, sent anyway
// the refusal would have its client drop what the original may yet do.
// The store's error is the answer: retry.
func TestRefusalUnsureWhenUnrecorded(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 500, 100, nil) // 100 cannot pay 500
	s := &refuseFails{Store: e.s}
	b := bank.New(s, e.keys, func() time.Time { return e.now }, nil)
	p, _, _ := e.planchet(0, e.dear.Denomination, e.dear.Private)
	w := &ecash.WithdrawRequest{Account: e.acct, CreatedAt: e.now, Planchets: []ecash.Planchet{p}}
	rand.Read(w.Nonce[:])
	ks, _ := e.b.KeySet()
	amount, err := ks.WithdrawAmount(w)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Withdraw(t.Context(), w.Body(), ecash.SignWithdraw(e.acctKey, w, amount))
	if s.calls != 1 || errors.Is(err, bank.ErrInsufficientFunds) || bank.Definitive(bank.ToStatus(t.Context(), err, nil)) {
		t.Fatalf("refusal the store could not record (%d tries): %v; want the store's error, not a refusal", s.calls, err)
	}
}

// TestRecordedRefusalUnreadBeforeSignature: a replica that does not serve
// a request's denomination looks the request's record up before the
// account's signature is checked (TestWithdrawRetryToReplicaWithoutDenomination).
// A refusal recorded there was returned as the lookup's error: its text
// (the account's balance, limits) went to a caller who had not shown the
// account's key, here one with a forged signature. It is told to retry
// (ErrNotServed), as for a withdrawal recorded, without the refusal's text.
func TestRecordedRefusalUnreadBeforeSignature(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 500, 100, nil) // 100 cannot pay 500
	body, sig := e.signedWithdrawOf(e.dear, 0, e.now)
	_, err := e.b.Withdraw(t.Context(), body, sig)
	var recorded *bank.WithdrawRefusal
	if !errors.As(err, &recorded) || !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("withdrawal the balance cannot pay: %v, want the recorded ErrInsufficientFunds", err)
	}

	older := *e.keys
	older.Denoms = slices.DeleteFunc(slices.Clone(e.keys.Denoms), func(d bank.DenomKey) bool { return d.ID == e.dear.ID })
	replica := bank.New(e.s, &older, func() (now time.Time) { return e.now }, nil)
	forged := slices.Clone(sig)
	forged[0] ^= 1
	for _, s := range [][]byte{forged, sig} {
		_, err := replica.Withdraw(t.Context(), body, s)
		st := sent(t.Context(), err)
		if !errors.Is(err, bank.ErrNotServed) || strings.Contains(st.Message(), recorded.Reason) || errors.As(err, new(*bank.WithdrawRefusal)) {
			t.Errorf("a refused request at a replica without its denomination: %v %q; want ErrNotServed without the refusal", st.Code(), st.Message())
		}
	}
}
