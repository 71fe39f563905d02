package wallet_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
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

// aheadWallet starts a bank on clk and a wallet funded with EUR 2 there
// whose clock is ahead of clk by what offset holds: the skew and a
// minute, to begin with.
func aheadWallet(t *testing.T) (f *fixture, w *wallet.Wallet, offset *atomic.Int64, clk *clock) {
	t.Helper()
	clk, offset = newClock(), new(atomic.Int64)
	f = newFixtureWith(t, keys(t), clk.now)
	offset.Store(int64(ecash.MaxClockSkew + time.Minute))
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: func() time.Time { return clk.now().Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f.fund(t, w, "EUR:2.00")
	return f, w, offset, clk
}

// accountBalance is what the bank holds on the wallet's account.
func accountBalance(t *testing.T, f *fixture, w *wallet.Wallet) int64 {
	t.Helper()
	id, err := w.Account()
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.bank.Store().Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// TestWithdrawClockAhead: a wallet whose clock runs more than the skew
// ahead of the bank's is refused its withdrawal. It is told so
// (ErrClockAhead, the bank's message saying by how much), nothing is
// debited or left pending, its planchet indices go to the next withdrawal,
// and once its clock is right it withdraws.
func TestWithdrawClockAhead(t *testing.T) {
	ctx := context.Background()
	f, w, offset, _ := aheadWallet(t)
	n0, _ := wallet.NextIndex(w)
	_, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil)
	if !errors.Is(err, wallet.ErrClockAhead) || !strings.Contains(err.Error(), "ahead of the bank's clock") {
		t.Fatalf("withdrawal by a wallet 6 minutes ahead: %v; want ErrClockAhead with the bank's word", err)
	}
	t.Log(err)
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals left pending after a refusal", n)
	}
	if b := accountBalance(t, f, w); b != 200 {
		t.Fatalf("account holds %d after a refused withdrawal, want 200", b)
	}
	if n, _ := wallet.NextIndex(w); n != n0 {
		t.Fatalf("planchet counter %d after a refused withdrawal, want %d (its indices parked)", n, n0)
	}
	offset.Store(0) // the clock set right
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("withdrawal once the clock is right: %v", err)
	}
	if got := fresh(t, w); got != "EUR:1.00" || accountBalance(t, f, w) != 100 {
		t.Fatalf("after the withdrawal: fresh %s, account %d; want EUR:1.00 and 100", got, accountBalance(t, f, w))
	}
}

// TestRecoveredWithdrawalClockAheadStaysPending: a withdrawal by a
// wallet whose clock is ahead never reaches the bank; Recover sends it
// and the bank refuses it for its date. A request recovered may have
// been sent before, and be committing at a replica whose clock is
// further on (TestRecoveredWithdrawalRefusedAtReplicaBehind): it stays
// pending, not reported refused, and stops nothing else (a withdrawal
// once the clock is right goes through); once the bank's clock reaches
// its date, Recover finishes it.
func TestRecoveredWithdrawalClockAheadStaysPending(t *testing.T) {
	ctx := context.Background()
	f, w, offset, clk := aheadWallet(t)
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil || len(rep.Refused) != 0 {
		t.Fatalf("recover of a withdrawal dated ahead of the bank's clock: %+v, %v; want it left pending", rep, err)
	}
	// The report says why, in the bank's words (by how much), for the
	// caller to tell its user to set the clock.
	if !strings.HasPrefix(rep.ClockAhead, "bank: timestamp outside what the bank accepts: withdraw request created at") || !strings.Contains(rep.ClockAhead, "ahead of the bank's clock") {
		t.Fatalf("recover's report of a withdrawal left pending for its date: %q", rep.ClockAhead)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending after the refusal for its date, want 1", n)
	}
	offset.Store(0) // the clock set right
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.50"), nil); err != nil {
		t.Fatalf("withdrawal once the clock is right, one pending for its date: %v", err)
	}
	clk.add(time.Minute) // the bank's clock reaches the pending request's date less the skew
	if rep, err := w.Recover(ctx, f.bankc); err != nil || rep.ClockAhead != "" {
		t.Fatalf("recover once the bank's clock reached the date: %+v, %v", rep, err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending once the bank's clock reached the date, want 0", n)
	}
	if got, acct := fresh(t, w), accountBalance(t, f, w); got != "EUR:1.50" || acct != 50 {
		t.Fatalf("fresh %s, account %d; want EUR:1.50 and 50", got, acct)
	}
}

// answerLost takes the withdraw requests it is sent to the bank and loses
// their answers: the request reaches the bank (sent, for the test to
// commit there when it chooses) and the wallet is told it is unavailable.
type answerLost struct {
	pb.BankClient
	sent **pb.WithdrawRequest
}

func (l answerLost) Withdraw(_ context.Context, in *pb.WithdrawRequest, _ ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	*l.sent = in
	return nil, status.Error(codes.Unavailable, "the answer was lost")
}

// TestRecoveredWithdrawalRefusedAtReplicaBehind: the wallet's clock runs
// 4 minutes ahead, the bank's replica A's is right, replica B's is 2
// minutes behind. A takes a withdraw request and is slow to commit it
// (waiting on the database); the wallet, without an answer, sends the
// request again, to B, which finds no record, refuses it as dated more
// than the skew ahead of its clock, and finds no record on its second
// look either; then A commits. The refusal said nothing of A's commit:
// the wallet dropped the request (and parked its indices for the next
// withdrawal) while the bank debited it, and its coins were lost. A
// request the wallet may have sent before, refused for its date, stays
// pending: answered from the record once A committed.
func TestRecoveredWithdrawalRefusedAtReplicaBehind(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now) // replica A
	behind := bank.New(f.bank.Store(), f.bank.Keys(), func() time.Time { return clk.now().Add(-2 * time.Minute) }, nil)
	replicaB := pb.NewBankClient(serve(t, func(s *grpc.Server) { pb.RegisterBankServer(s, behind.PublicServer()) }))
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: func() time.Time { return clk.now().Add(4 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f.fund(t, w, "EUR:2.00")
	var sent *pb.WithdrawRequest
	if _, err := w.Withdraw(ctx, answerLost{f.bankc, &sent}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, replicaB)
	if err != nil {
		t.Fatalf("recover at replica B: %v", err)
	}
	t.Logf("replica B: refused %+v", rep.Refused)
	// A commits the request it took before B refused it.
	if _, err := f.bank.Withdraw(ctx, sent.Body, sent.AccountSig); err != nil {
		t.Fatalf("replica A commits the original: %v", err)
	}
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatalf("recover at replica A: %v", err)
	}
	if got, acct := fresh(t, w), accountBalance(t, f, w); got != "EUR:1.00" || acct != 100 {
		t.Fatalf("the bank debited the account to %d; the wallet holds fresh %s, want EUR:1.00 (the withdrawal's coins)", acct, got)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending once answered", n)
	}
}

// TestWithdrawClockBehind: a wallet whose clock runs more than
// bank.MaxWithdrawAge behind the bank's is refused its withdrawal as
// dated too long ago. It is told its clock is behind (ErrClockBehind,
// with the bank's word), nothing is debited or left pending, and once its
// clock is right it withdraws.
func TestWithdrawClockBehind(t *testing.T) {
	ctx := context.Background()
	f, w, offset, clk := aheadWallet(t)
	// The bank's clock on, past the key set's issue time by more than the
	// wallet lags: the wallet takes the key set, and it is the request's
	// date the bank refuses.
	clk.add(bank.MaxWithdrawAge + time.Hour)
	offset.Store(int64(-bank.MaxWithdrawAge - time.Minute))
	_, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil)
	if !errors.Is(err, wallet.ErrClockBehind) || !strings.Contains(err.Error(), "dated too long ago") {
		t.Fatalf("withdrawal by a wallet 12h1m behind: %v; want ErrClockBehind with the bank's word", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals left pending after a refusal", n)
	}
	if b := accountBalance(t, f, w); b != 200 {
		t.Fatalf("account holds %d after a refused withdrawal, want 200", b)
	}
	offset.Store(0)
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("withdrawal once the clock is right: %v", err)
	}
	if accountBalance(t, f, w) != 100 {
		t.Fatalf("account %d after the withdrawal, want 100", accountBalance(t, f, w))
	}
}

// TestRecoveredTooOldParksIndices: a withdrawal that never reached the
// bank is recovered more than bank.MaxWithdrawAge after its date. The bank
// refuses it for its age after looking its record up (bank.ErrTooOld,
// recorded: it is never signed), so the wallet drops it, reports it, and
// parks its indices for the next withdrawal instead of leaving a gap of
// indices with no coin that a restore from the seed must scan past.
func TestRecoveredTooOldParksIndices(t *testing.T) {
	ctx := context.Background()
	f, w, offset, clk := aheadWallet(t)
	offset.Store(0)
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	n1, _ := wallet.NextIndex(w)
	clk.add(bank.MaxWithdrawAge + time.Hour)
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, "dated too long ago") {
		t.Fatalf("recover of a withdrawal 13 hours old: %+v, %v; want it reported refused for its age", rep, err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending after the refusal", n)
	}
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := wallet.NextIndex(w); n != n1 {
		t.Fatalf("planchet counter %d after the next withdrawal, want %d: the refused request's indices were skipped, not parked", n, n1)
	}
	if b := accountBalance(t, f, w); b != 100 {
		t.Fatalf("account holds %d, want 100", b)
	}
}
