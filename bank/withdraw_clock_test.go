package bank_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// signedWithdraw is a new withdraw request for one cheap coin (planchet
// index), dated created: its body and the account's signature.
func (e *recoupEnv) signedWithdraw(index uint64, created time.Time) (body, sig []byte) {
	e.t.Helper()
	return e.signedWithdrawOf(e.cheap, index, created)
}

// signedWithdrawOf is signedWithdraw for a coin of d.
func (e *recoupEnv) signedWithdrawOf(d bank.DenomKey, index uint64, created time.Time) (body, sig []byte) {
	e.t.Helper()
	p, _, _ := e.planchet(index, d.Denomination, d.Private)
	w := &ecash.WithdrawRequest{Account: e.acct, CreatedAt: created, Planchets: []ecash.Planchet{p}}
	rand.Read(w.Nonce[:])
	ks, _ := e.b.KeySet()
	amount, err := ks.WithdrawAmount(w)
	if err != nil {
		e.t.Fatal(err)
	}
	return w.Body(), ecash.SignWithdraw(e.acctKey, w, amount)
}

func (e *recoupEnv) logSize() int64 {
	e.t.Helper()
	n, err := e.s.LogSize(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestWithdrawRefusesRequestAheadOfClock: the bank took a withdraw request
// dated however far ahead of its clock, and a wallet's log check, which
// judges a withdrawal's answer by its request's date less the skew, then
// reported an honest bank. A new request dated more than MaxClockSkew
// ahead is refused (ErrBadTimestamp, a definitive InvalidArgument, as for
// a payment request), debiting and logging nothing and using none of the
// account's rate; one dated exactly the skew ahead is taken.
func TestWithdrawRefusesRequestAheadOfClock(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	e.b.LimitAccounts(bank.NewRateLimiter(0.001, 1, 100)) // one withdrawal, then none
	balance, logged := e.balance(), e.logSize()
	for i := range 3 {
		body, sig := e.signedWithdraw(uint64(i), e.now.Add(ecash.MaxClockSkew+time.Millisecond))
		_, err := e.b.Withdraw(ctx, body, sig)
		st := status.Convert(bank.ToStatus(ctx, err, nil))
		if !errors.Is(err, bank.ErrBadTimestamp) || st.Code() != codes.InvalidArgument || !bank.Definitive(st.Err()) {
			t.Fatalf("request %d dated skew+1ms ahead: %v (gRPC %v); want ErrBadTimestamp, InvalidArgument", i, err, st.Code())
		}
		if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); err != nil || found {
			t.Fatalf("refused request %d recorded (%v, %v)", i, found, err)
		}
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Fatalf("refused requests moved the balance %d → %d, the log %d → %d entries", balance, e.balance(), logged, e.logSize())
	}
	body, sig := e.signedWithdraw(3, e.now.Add(ecash.MaxClockSkew))
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil {
		t.Fatalf("request dated exactly the skew ahead, after three refused for their date: %v", err)
	}
	if e.balance() != balance-1 || e.logSize() != logged+1 {
		t.Fatalf("withdrawal taken: balance %d → %d, log %d → %d entries; want one debited and one logged", balance, e.balance(), logged, e.logSize())
	}
	// The rate was there to use: the next one is over it.
	body, sig = e.signedWithdraw(4, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.Is(err, bank.ErrRateLimited) {
		t.Fatalf("second withdrawal at a rate of one: %v, want ErrRateLimited", err)
	}
}

// TestWithdrawRetryAfterClockWentBack: a withdrawal taken dated the skew
// ahead, retried once the bank's clock went back (a replica behind, or a
// clock corrected), is dated too far ahead for a new request. The retry is
// answered from the record all the same: refused, its wallet would take
// the refusal for "nothing recorded" and drop the coins it paid for.
func TestWithdrawRetryAfterClockWentBack(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	created := e.now.Add(ecash.MaxClockSkew)
	body, sig := e.signedWithdraw(0, created)
	first, err := e.b.Withdraw(ctx, body, sig)
	if err != nil {
		t.Fatal(err)
	}
	balance, logged := e.balance(), e.logSize()
	e.now = e.now.Add(-time.Minute)
	again, err := e.b.Withdraw(ctx, body, sig)
	if err != nil || !slices.EqualFunc(first, again, bytes.Equal) {
		t.Fatalf("retry after the bank's clock went back: %v (same signatures: %v)", err, slices.EqualFunc(first, again, bytes.Equal))
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Fatalf("retry moved the balance %d → %d, the log %d → %d entries", balance, e.balance(), logged, e.logSize())
	}
	// A new request of that date is now refused: the retry was one too.
	body, sig = e.signedWithdraw(1, created)
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.Is(err, bank.ErrBadTimestamp) {
		t.Fatalf("new request dated as the first, after the clock went back: %v, want ErrBadTimestamp", err)
	}
}

// TestWithdrawRetryRacingCommitAtReplicaBehind: a retry reaches a replica
// whose clock is a minute behind while its original, dated the skew ahead
// of the first replica's clock, commits there: the retry's record lookup
// runs before that commit, its date check after. Refused for its date,
// the retry would be taken for "nothing recorded" and its coins dropped;
// it is answered from the record.
func TestWithdrawRetryRacingCommitAtReplicaBehind(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	body, sig := e.signedWithdraw(0, e.now.Add(ecash.MaxClockSkew))
	rs := &raceStore{Store: e.s}
	behind := bank.New(rs, e.keys, func() time.Time { return e.now.Add(-time.Minute) }, nil)
	var original [][]byte
	rs.beforeWithdrawal = func() {
		var err error
		if original, err = e.b.Withdraw(ctx, body, sig); err != nil {
			t.Fatalf("original withdrawal: %v", err)
		}
	}
	got, err := behind.Withdraw(ctx, body, sig)
	if err != nil {
		st := bank.ToStatus(ctx, err, nil)
		t.Fatalf("retry of a withdrawal committed meanwhile, at a replica behind: %v (gRPC %v, Definitive=%v); want the original signatures",
			err, st, bank.Definitive(st))
	}
	if original == nil || !slices.EqualFunc(got, original, bytes.Equal) {
		t.Fatal("the retry's signatures are not the original's")
	}
}
