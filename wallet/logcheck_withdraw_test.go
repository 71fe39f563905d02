package wallet_test

import (
	"context"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// withdraw credits the wallet's account EUR 1 and has the wallet withdraw
// it; omit leaves the withdrawal out of the bank's log.
func (u *unloggedBank) withdraw(t *testing.T, omit bool) {
	t.Helper()
	defer u.fund(t, omit)()
	if _, err := u.w.Withdraw(context.Background(), u.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyLogLoggedWithdrawal: a withdrawal the bank logged is verified,
// its entry debiting the wallet's account for the coins it asked for. It
// was never checked.
func TestVerifyLogLoggedWithdrawal(t *testing.T) {
	u := newUnloggedBank(t, 0, 20*time.Minute) // which withdrew EUR 10
	rep, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc)
	if err != nil || rep.Waiting != 0 || rep.Verified != 2 {
		t.Fatalf("%+v, %v; want the key set and the withdrawal verified", rep, err)
	}
}

// wantUnloggedWithdrawal fails t unless err is ErrLogMismatch saying that
// the log lacks a withdrawal, judged by its request's date (a withdrawal's
// answer carries none).
func wantUnloggedWithdrawal(t *testing.T, err error) {
	t.Helper()
	wantJudgedByRequest(t, err, wallet.ErrLogMismatch, "the withdrawal of request", "its answer carries no date")
}

// TestVerifyLogUnloggedWithdrawal: a withdrawal the bank answered with
// coins and never logged (issuance the auditor does not see, a debit it
// cannot check) is ErrLogMismatch, with the report, at every run. It was
// not checked at all.
func TestVerifyLogUnloggedWithdrawal(t *testing.T) {
	ctx := context.Background()
	u := newUnloggedBank(t, 0, 20*time.Minute)
	u.withdraw(t, true)
	rep, err := u.w.VerifyLog(ctx, u.bankc, u.logc)
	wantUnloggedWithdrawal(t, err)
	if rep == nil || rep.Signed == nil || rep.Verified != 2 {
		t.Fatalf("the report: %+v; want the signed checkpoint, the evidence, and the others verified", rep)
	}
	_, err = u.w.VerifyLog(ctx, u.bankc, u.logc)
	wantUnloggedWithdrawal(t, err)
}

// TestVerifyLogBackdatedWithdrawal: a bank that leaves a withdrawal out of
// its log cannot pass it off as answered from a record made before its
// log began, whatever date it keeps for it: its answer carries no date,
// and the wallet judges it by its own request's, made after the log
// began. (A bank whose clock read before its log began would refuse the
// request, dated too far ahead of it: the bank here dates its posting back.)
func TestVerifyLogBackdatedWithdrawal(t *testing.T) {
	for name, at := range backdated {
		t.Run(name, func(t *testing.T) {
			u := newUnloggedBank(t, 0, 20*time.Minute)
			u.store.backdate.Store(&at)
			u.withdraw(t, true)
			_, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc)
			wantUnloggedWithdrawal(t, err)
		})
	}
}

// TestVerifyLogWithdrawalBeforeLog: a withdrawal requested before the
// bank's log began (as one made before the bank kept a log, answered again
// from its record) has no entry, and waits.
func TestVerifyLogWithdrawalBeforeLog(t *testing.T) {
	u := newUnloggedBank(t, 20*time.Minute, 0)
	u.withdraw(t, true)
	rep, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc)
	if err != nil || rep.Waiting != 1 || rep.Verified != 2 {
		t.Fatalf("%+v, %v; want it waiting (and the key set and the first withdrawal verified)", rep, err)
	}
}
