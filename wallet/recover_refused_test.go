package wallet_test

import (
	"context"
	"errors"
	"slices"
	"strings"
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

// unsentWithdraw fails every Withdraw before it reaches the bank: the
// request stays pending, for Recover.
type unsentWithdraw struct{ pb.BankClient }

func (unsentWithdraw) Withdraw(context.Context, *pb.WithdrawRequest, ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	return nil, status.Error(codes.Unavailable, "the bank is unreachable")
}

// TestRecoveredRefusedWithdrawalParksIndices: withdrawals of 64 coins each
// are persisted but never reach the bank; Recover sends each one later and
// the bank refuses it (the account lacks the funds). A refusal of the live
// call parks the indices for the next withdrawal; the recovered refusals
// skipped theirs, five of them 320 indices in a row with no coin, more than
// RestoreGap: a restore from the seed stopped before the coins withdrawn
// after them, and the restored wallet held nothing.
func TestRecoveredRefusedWithdrawalParksIndices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:1.00")
	n0, _ := wallet.NextIndex(w)
	big := ecash.MustParseAmount("EUR:286.71") // 64 coins: one of each value to 5.12, then 54 of 5.12
	for i := range 5 {
		if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, big, nil); !errors.Is(err, wallet.ErrPending) {
			t.Fatalf("withdrawal %d never sent: %v, want ErrPending", i, err)
		}
		_, err := w.Recover(ctx, f.bankc)
		t.Logf("recovered withdrawal %d: %v", i, err)
		if n, _ := w.PendingWithdrawals(); n != 0 {
			t.Fatalf("withdrawal %d still pending after the bank refused it", i)
		}
	}
	next, _ := wallet.NextIndex(w)
	t.Logf("counter %d before the refused withdrawals, %d after", n0, next)
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	top, _, _ := wallet.TopCoinIndex(w)
	r, rep, err := wallet.Restore(ctx, t.TempDir(), w.Seed(), f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("coins up to index %d; the restore scanned %d indices, found %d coins, %s", top, rep.Scanned, rep.Found, rep.Fresh)
	if rep.Fresh.String() != "EUR:1.00" {
		t.Fatalf("restored %s from the seed; the wallet holds EUR:1.00, its coins past %d indices the refused withdrawals skipped", rep.Fresh, top)
	}
}

// answerLostThenUnknown passes the first Withdraw to the bank and loses
// its answer; it refuses every later one NotFound, as a bank did before
// it looked its record up (a denomination the replica asked did not
// serve).
type answerLostThenUnknown struct {
	pb.BankClient
	sent bool
}

func (c *answerLostThenUnknown) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if c.sent {
		return nil, status.Error(codes.NotFound, "ecash: unknown denomination")
	}
	c.sent = true
	if _, err := c.BankClient.Withdraw(ctx, in, opts...); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "connection reset")
}

// TestRecoveredUnknownDenominationKeepsIndices: a recovered request is a
// retry whose first send's outcome is unknown. Refused by a bank that has
// not looked its record up (NotFound, InvalidArgument, Unauthenticated),
// the bank may have signed its planchets: parked, the next withdrawal
// reused the indices, and under another key paid for coins whose keys a
// restore finds twice. Only refusals made after the record (funds,
// limits; not the lock, kept pending) park a recovered request.
func TestRecoveredUnknownDenominationKeepsIndices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	n0, _ := wallet.NextIndex(w)
	c := &answerLostThenUnknown{BankClient: f.bankc}
	if _, err := w.Withdraw(ctx, c, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	_, err := w.Recover(ctx, c)
	t.Logf("recovered: %v", err)
	if n, _ := wallet.NextIndex(w); n == n0 {
		t.Fatalf("the indices of a recovered withdrawal the bank signed were parked after a refusal made before its record (counter back at %d)", n)
	}
}

// prunedBank serves a key set that no longer lists denominations past
// their deposit window, and answers a withdrawal of one of them as a bank
// that pruned it does for a recorded request: retry (ErrNotServed).
type prunedBank struct {
	*keysFrom
	pruned map[ecash.Hash]bool
}

func (b *prunedBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	req, err := ecash.DecodeWithdrawRequest(in.Body)
	if err != nil {
		return nil, err
	}
	for _, p := range req.Planchets {
		if b.pruned[p.Denom] {
			return nil, status.Error(codes.Unavailable, bank.ErrNotServed.Error())
		}
	}
	return b.keysFrom.Withdraw(ctx, in, opts...)
}

// TestRecoveredPrunedWithdrawalStopsNothing: a wallet whose withdrawal's
// answer was lost lay unused past its coins' deposit window; the bank
// pruned their keys, and a bank that cannot compute a recorded request's
// debit tells it to retry. Sent at every recovery, that
// request stopped every later Withdraw and Recover for good. The wallet
// no longer sends a request its key set does not list; it stays pending.
func TestRecoveredPrunedWithdrawalStopsNothing(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 80*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f.fund(t, w, "EUR:2.00")
	if _, err := w.Withdraw(ctx, &answerLostThenUnknown{BankClient: f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	clk.add(45 * time.Hour) // past the first keys' deposit window
	pk := *k
	pk.Denoms = slices.Clone(k.Denoms)
	gone, _ := pk.Prune(clk.now(), time.Time{})
	if len(gone) == 0 {
		t.Fatal("nothing to prune")
	}
	pruned := map[ecash.Hash]bool{}
	for _, d := range gone {
		pruned[d.ID] = true
	}
	b := &prunedBank{keysFrom: &keysFrom{BankClient: f.bankc, signed: pk.KeySet().Encode()}, pruned: pruned}
	if _, err := w.Withdraw(ctx, b, ecash.MustParseAmount("EUR:0.50"), nil); err != nil {
		t.Fatalf("withdrawal after a recorded request of pruned keys: %v", err)
	}
	if _, err := w.Recover(ctx, b); err != nil {
		t.Fatalf("recovery with a recorded request of pruned keys: %v", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending, want the pruned one kept", n)
	}
}

// countingWithdraw counts the Withdraw calls it relays, and fails the
// first fail of them Unavailable without relaying them.
type countingWithdraw struct {
	pb.BankClient
	calls, fail int
}

func (c *countingWithdraw) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	c.calls++
	if c.calls <= c.fail {
		return nil, status.Error(codes.Unavailable, "the bank is unreachable")
	}
	return c.BankClient.Withdraw(ctx, in, opts...)
}

// TestWithdrawAfterRefusedRecovery: a withdrawal of more than the account
// holds is persisted and never reaches the bank. The next Withdraw, of
// what the account holds, first re-sends it and the bank refuses it for
// good (insufficient funds): that ended the old request, and the new
// withdrawal failed with the old one's refusal, once. It proceeds now,
// from the indices the refused request parked; the refusal is reported
// by the next Recover, once.
func TestWithdrawAfterRefusedRecovery(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:1.00")
	n0, _ := wallet.NextIndex(w)
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:5.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	c := &countingWithdraw{BankClient: f.bankc}
	coins, err := w.Withdraw(ctx, c, ecash.MustParseAmount("EUR:1.00"), nil)
	if err != nil {
		t.Fatalf("a withdrawal the account covers, after an earlier one it does not: %v", err)
	}
	if c.calls != 2 {
		t.Fatalf("%d withdraw requests sent, want the old one and the new one", c.calls)
	}
	if fresh(t, w) != "EUR:1.00" {
		t.Fatalf("the wallet holds %s fresh, want EUR:1.00", fresh(t, w))
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending, want the refused one ended", n)
	}
	// The refused request's indices were parked, and the new one took them.
	if next, _ := wallet.NextIndex(w); next != n0+uint64(len(coins)) {
		t.Fatalf("counter %d after %d coins from %d: the refused request's indices were not given to the next withdrawal", next, len(coins), n0)
	}
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refused) != 1 || rep.Refused[0].Amount.String() != "EUR:5.00" || !strings.Contains(rep.Refused[0].Reason, "FailedPrecondition") {
		t.Fatalf("Recover reports %+v, want the EUR:5.00 withdrawal refused (FailedPrecondition)", rep.Refused)
	}
	if rep, err := w.Recover(ctx, f.bankc); err != nil || len(rep.Refused) != 0 {
		t.Fatalf("a second Recover: %+v, %v; want the refusal reported once", rep, err)
	}
	f.checkConservation(t, w)
}

// TestRecoveredRefusalReported: Recover itself re-sends the old
// withdrawal; the bank refuses it. Recover goes on to its other work and
// reports the refusal, instead of failing with it.
func TestRecoveredRefusalReported(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:1.00")
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:5.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil {
		t.Fatalf("Recover with a withdrawal the bank refuses: %v", err)
	}
	if len(rep.Refused) != 1 || rep.Refused[0].Amount.String() != "EUR:5.00" {
		t.Fatalf("Recover reports %+v, want the EUR:5.00 withdrawal refused", rep.Refused)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending, want the refused one ended", n)
	}
}

// TestTransientRecoveryStopsWithdraw: the old request's re-send is not
// answered (the bank unreachable: its outcome still unknown). The new
// withdrawal is not sent, as before: the old one stays pending for the
// next call.
func TestTransientRecoveryStopsWithdraw(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	c := &countingWithdraw{BankClient: f.bankc, fail: 1}
	if _, err := w.Withdraw(ctx, c, ecash.MustParseAmount("EUR:0.50"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal after an unanswered recovery: %v, want ErrPending", err)
	}
	if c.calls != 1 {
		t.Fatalf("%d withdraw requests sent, want only the old one's re-send", c.calls)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending, want the old one", n)
	}
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	if got := fresh(t, w); got != "EUR:1.00" {
		t.Fatalf("after Recover the wallet holds %s, want the old withdrawal's EUR:1.00", got)
	}
}

// TestCrashRecoveredRefusedWithdrawalParksIndices: a withdrawal persisted
// and never sent, the wallet closed (a crash) and opened again, then sent
// by Recover and refused for the account's funds: its planchet indices are
// parked for the next withdrawal, not skipped, across the reopening.
func TestCrashRecoveredRefusedWithdrawalParksIndices(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:1.00")
	n0, _ := wallet.NextIndex(w)
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:286.71"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	if n, _ := wallet.NextIndex(w); n <= n0 {
		t.Fatalf("the pending withdrawal reserved no index (%d, %d before)", n, n0)
	}
	w.Close()
	if w, err = wallet.Open(dir, wallet.Options{}); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, "FailedPrecondition") {
		t.Fatalf("recover after the crash: %+v, %v; want the withdrawal refused for funds", rep, err)
	}
	if n, _ := wallet.NextIndex(w); n != n0 {
		t.Fatalf("counter %d after the refusal, %d before the withdrawal: its indices were skipped, not parked", n, n0)
	}
}
