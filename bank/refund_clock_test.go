package bank_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// datedRefund is refund number id of EUR 0.01 of payment, dated created.
func datedRefund(shop uint64, mkey ed25519.PrivateKey, payment ecash.Hash, id uint64, created time.Time) []byte {
	req := &ecash.RefundRequest{PaymentHash: payment, MerchantAccount: shop, RefundID: id, Amount: ecash.Amount{Currency: "EUR", Value: 1}, CreatedAt: created}
	req.Sign(mkey)
	return req.Encode()
}

func (e *recoupEnv) accountBalance(id uint64) int64 {
	e.t.Helper()
	a, err := e.s.Account(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Balance
}

// TestRefundRefusesRequestAheadOfClock: the bank took a refund request
// dated however far ahead of its clock, as it no longer takes a withdraw
// or payment request. A new one dated more than MaxClockSkew ahead is
// refused (ErrBadTimestamp, a definitive InvalidArgument), debiting and
// logging nothing; one dated exactly the skew ahead is taken.
func TestRefundRefusesRequestAheadOfClock(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	shop, mkey, payment, _, _ := paidShop(t, e)
	balance, logged := e.accountBalance(shop), e.logSize()
	raw := datedRefund(shop, mkey, payment, 1, e.now.Add(ecash.MaxClockSkew+time.Millisecond))
	_, _, err := e.b.Refund(ctx, raw)
	st := status.Convert(bank.ToStatus(ctx, err, nil))
	if !errors.Is(err, bank.ErrBadTimestamp) || st.Code() != codes.InvalidArgument || !bank.BadTimestamp(st.Err()) {
		t.Fatalf("refund dated skew+1ms ahead: %v (gRPC %v); want ErrBadTimestamp, InvalidArgument", err, st.Code())
	}
	req, _ := ecash.DecodeRefundRequest(raw)
	if _, found, err := e.s.RefundRecord(ctx, req.Hash()); err != nil || found {
		t.Fatalf("refused refund recorded (%v, %v)", found, err)
	}
	if e.accountBalance(shop) != balance || e.logSize() != logged {
		t.Fatalf("refused refund moved the merchant's balance %d → %d, the log %d → %d entries", balance, e.accountBalance(shop), logged, e.logSize())
	}
	if _, _, err := e.b.Refund(ctx, datedRefund(shop, mkey, payment, 2, e.now.Add(ecash.MaxClockSkew))); err != nil {
		t.Fatalf("refund dated exactly the skew ahead: %v", err)
	}
	if e.accountBalance(shop) != balance-1 || e.logSize() != logged+1 {
		t.Fatalf("refund taken: merchant's balance %d → %d, log %d → %d entries; want one debited and one logged", balance, e.accountBalance(shop), logged, e.logSize())
	}
}

// TestRefundRetryAfterClockWentBack: a refund taken dated the skew ahead,
// retried once the bank's clock went back (a replica behind, a clock
// corrected), is answered from the record: refused, its merchant would
// take the refusal for "nothing recorded" and drop a refund the bank made.
func TestRefundRetryAfterClockWentBack(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	shop, mkey, payment, _, _ := paidShop(t, e)
	raw := datedRefund(shop, mkey, payment, 1, e.now.Add(ecash.MaxClockSkew))
	_, first, err := e.b.Refund(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(-time.Minute)
	if _, again, err := e.b.Refund(ctx, raw); err != nil || !bytes.Equal(again, first) {
		t.Fatalf("retry after the bank's clock went back: %v (same receipt: %v)", err, bytes.Equal(again, first))
	}
	// A new refund of that date is now refused: the retry was one too.
	if _, _, err := e.b.Refund(ctx, datedRefund(shop, mkey, payment, 2, e.now.Add(time.Minute+ecash.MaxClockSkew))); !errors.Is(err, bank.ErrBadTimestamp) {
		t.Fatalf("new refund dated as the first, after the clock went back: %v, want ErrBadTimestamp", err)
	}
}

// TestRefundRetryRacingCommitAtReplicaBehind: a retry reaches a replica
// whose clock is a minute behind while its original, dated the skew ahead
// of the first replica's clock, commits there between the retry's record
// lookup and its date check. It is answered from the record, not refused
// for its date.
func TestRefundRetryRacingCommitAtReplicaBehind(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	shop, mkey, payment, _, _ := paidShop(t, e)
	raw := datedRefund(shop, mkey, payment, 1, e.now.Add(ecash.MaxClockSkew))
	rs := &raceStore{Store: e.s}
	behind := bank.New(rs, e.keys, func() time.Time { return e.now.Add(-time.Minute) }, nil)
	var original []byte
	rs.beforeRefundRecord = func() {
		var err error
		if _, original, err = e.b.Refund(ctx, raw); err != nil {
			t.Fatalf("original refund: %v", err)
		}
	}
	_, got, err := behind.Refund(ctx, raw)
	if err != nil {
		st := bank.ToStatus(ctx, err, nil)
		t.Fatalf("retry of a refund committed meanwhile, at a replica behind: %v (gRPC %v, Definitive=%v); want the original receipt",
			err, st, bank.Definitive(st))
	}
	if original == nil || !bytes.Equal(got, original) {
		t.Fatal("the retry's receipt is not the original's")
	}
}

// TestRefundWindow: the bank took a refund request dated however long
// ago, and committed one however long after its checks; a merchant that
// dropped a pending refund the bank had no receipt of (merchant
// ErrRefundDropped, two hours and ten minutes after its date) could see
// it debited later, from a replica paused in between. A new request dated
// more than RefundWindow and the skew before the bank's clock is refused
// (ErrTooOld, definitive), one just inside is taken, a retry of a taken
// one is answered from the record however late, and a refund stalled
// between the bank's checks and its commit past that bound is refused at
// the commit (ErrTooLate), moving nothing.
func TestRefundWindow(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	shop, mkey, payment, _, _ := paidShop(t, e)
	balance, logged := e.accountBalance(shop), e.logSize()
	bound := bank.RefundWindow + ecash.MaxClockSkew
	_, _, err := e.b.Refund(ctx, datedRefund(shop, mkey, payment, 1, e.now.Add(-bound-time.Second)))
	if st := status.Convert(bank.ToStatus(ctx, err, nil)); !errors.Is(err, bank.ErrTooOld) || !bank.Definitive(st.Err()) || !bank.TooOld(st.Err()) {
		t.Fatalf("a refund dated the window and the skew and 1s ago: %v (gRPC %v); want ErrTooOld, a refusal", err, st.Code())
	}
	if e.accountBalance(shop) != balance || e.logSize() != logged {
		t.Fatalf("the refused refund moved the merchant's balance %d → %d, the log %d → %d", balance, e.accountBalance(shop), logged, e.logSize())
	}
	raw := datedRefund(shop, mkey, payment, 2, e.now.Add(-bound))
	_, first, err := e.b.Refund(ctx, raw)
	if err != nil {
		t.Fatalf("a refund dated exactly the window and the skew ago: %v", err)
	}
	e.now = e.now.Add(24 * time.Hour)
	if _, again, err := e.b.Refund(ctx, raw); err != nil || !bytes.Equal(again, first) {
		t.Fatalf("a retry a day later: %v (same receipt: %v); want the record", err, bytes.Equal(again, first))
	}

	balance, logged = e.accountBalance(shop), e.logSize()
	stalled := datedRefund(shop, mkey, payment, 3, e.now)
	err = e.stalled("refund", e.now.Add(bound+time.Second), func(b *bank.Bank) error {
		_, _, err := b.Refund(ctx, stalled)
		return err
	})
	if !errors.Is(err, bank.ErrTooLate) || !bank.Definitive(bank.ToStatus(ctx, err, nil)) {
		t.Fatalf("a refund committed past its date + the window + the skew: %v; want ErrTooLate, a refusal", err)
	}
	if e.accountBalance(shop) != balance || e.logSize() != logged {
		t.Errorf("the stalled refund moved the merchant's balance %d → %d, the log %d → %d", balance, e.accountBalance(shop), logged, e.logSize())
	}
}
