package wallet_test

// A recovered swap (or recoup re-issue) refused for good by one replica
// while its original is still committing at another (review s25; the
// demonstration of 29b0d65, TestRecoveredSwapRefusedWhileInFlight, kept
// here as the regression tests).

import (
	"context"
	"errors"
	"sync"
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

// heldSwapStore holds the first swap commit (a swap's, or a recoup's
// re-issue) until release is closed, closing arrived once it is held;
// with fail set, the held commit then fails instead of committing.
type heldSwapStore struct {
	bank.Store
	once             sync.Once
	arrived, release chan struct{}
	fail             bool
}

var errHeldFailed = errors.New("test: the held commit failed")

func (s *heldSwapStore) Swap(ctx context.Context, op bank.SwapOp) ([][]byte, error) {
	held := false
	s.once.Do(func() {
		held = true
		close(s.arrived)
		<-s.release
	})
	if held && s.fail {
		return nil, errHeldFailed
	}
	return s.Store.Swap(ctx, op)
}

// heldAnswerLost relays to a bank (in process) whose swap commits are held:
// the call whose commit is held is answered Unavailable (its answer
// lost) while the commit goes on, its outcome sent to original. Calls
// that commit nothing (a recoup without outputs) pass through.
type heldAnswerLost struct {
	pb.BankClient
	srv      pb.BankServer
	arrived  chan struct{}
	original chan error
	lost     atomic.Bool
}

func (c *heldAnswerLost) relay(call func() error) error {
	if c.lost.Load() {
		return call()
	}
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-c.arrived:
		c.lost.Store(true)
		go func() { c.original <- <-done }()
		return status.Error(codes.Unavailable, "the bank did not answer")
	}
}

func (c *heldAnswerLost) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	var resp *pb.SwapResponse
	err := c.relay(func() (err error) { resp, err = c.srv.Swap(context.Background(), in); return err })
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *heldAnswerLost) Recoup(ctx context.Context, in *pb.RecoupRequest, opts ...grpc.CallOption) (*pb.RecoupResponse, error) {
	var resp *pb.RecoupResponse
	err := c.relay(func() (err error) { resp, err = c.srv.Recoup(context.Background(), in); return err })
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// afterRefusal relays to a bank over gRPC; once (when armed) its refusal
// of a swap or recoup has come back, it runs then before handing the
// refusal on: the original committing just after the retry was refused.
type afterRefusal struct {
	pb.BankClient
	then  atomic.Pointer[func()]
	swaps atomic.Int32 // refusals of swaps and recoups with outputs seen
}

func (c *afterRefusal) refused(err error) error {
	if err != nil && bank.Definitive(err) {
		c.swaps.Add(1)
		if f := c.then.Swap(nil); f != nil {
			(*f)()
		}
	}
	return err
}

func (c *afterRefusal) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := c.BankClient.Swap(ctx, in, opts...)
	return resp, c.refused(err)
}

func (c *afterRefusal) Recoup(ctx context.Context, in *pb.RecoupRequest, opts ...grpc.CallOption) (*pb.RecoupResponse, error) {
	resp, err := c.BankClient.Recoup(ctx, in, opts...)
	return resp, c.refused(err)
}

// inflightSetup is a wallet (on clock clk) holding EUR 2.00 of coins; a
// bank client, first, whose swap commits are held and whose answers are
// then lost; and a replica over gRPC, later, whose clock is past every
// denomination's withdraw window (it refuses every swap for its outputs,
// FailedPrecondition), on the same store.
type inflightSetup struct {
	f     *fixture
	w     *wallet.Wallet
	clk   *atomic.Int64 // the wallet's clock: time.Now plus this
	hs    *heldSwapStore
	first *heldAnswerLost
	later *afterRefusal
}

func newInflightSetup(t *testing.T, fail bool, keysNow func(*fixture) *bank.Keys) *inflightSetup {
	t.Helper()
	f := newFixture(t)
	s := &inflightSetup{f: f, clk: new(atomic.Int64)}
	s.w = f.walletWithCoins(t, wallet.Options{Now: func() time.Time { return time.Now().Add(time.Duration(s.clk.Load())) }}, "EUR:2.00", "EUR:2.00")
	s.arm(t, fail, keysNow)
	return s
}

// swapAnswerLost swaps EUR 1.00 through first, whose answer is lost: the
// swap stays pending while its original is held at the store.
func (s *inflightSetup) swapAnswerLost(t *testing.T) {
	t.Helper()
	if _, err := s.w.Swap(context.Background(), s.first, ecash.MustParseAmount("EUR:1.00")); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("swap whose answer was lost: %v, want ErrPending", err)
	}
}

// arm makes first and later on the bank's keys as keysNow gives them.
func (s *inflightSetup) arm(t *testing.T, fail bool, keysNow func(*fixture) *bank.Keys) {
	t.Helper()
	k := keysNow(s.f)
	var end time.Time
	for _, d := range k.Denoms {
		if d.WithdrawEnd.After(end) {
			end = d.WithdrawEnd
		}
	}
	s.hs = &heldSwapStore{Store: s.f.bank.Store(), arrived: make(chan struct{}), release: make(chan struct{}), fail: fail}
	s.first = &heldAnswerLost{BankClient: s.f.bankc, srv: bank.New(s.hs, k, time.Now, nil).PublicServer(), arrived: s.hs.arrived, original: make(chan error, 1)}
	later := bank.New(s.f.bank.Store(), k, func() time.Time { return end }, nil)
	s.later = &afterRefusal{BankClient: pb.NewBankClient(serve(t, func(g *grpc.Server) { pb.RegisterBankServer(g, later.PublicServer()) }))}
}

// releaseAfterRefusal makes the original commit (or fail) once later's
// next refusal is back, before the wallet sees it.
func (s *inflightSetup) releaseAfterRefusal(t *testing.T) {
	f := func() {
		close(s.hs.release)
		if err := <-s.first.original; (err != nil) != s.hs.fail {
			t.Errorf("the original: %v (fail %v)", err, s.hs.fail)
		}
	}
	s.later.then.Store(&f)
}

func currentKeys(f *fixture) *bank.Keys { return f.bank.Keys() }

func swapsOf(rep *wallet.RecoverReport, o wallet.SwapOutcome) int {
	n := 0
	for _, s := range rep.Swaps {
		if s.Outcome == o {
			n++
		}
	}
	return n
}

// TestRecoveredSwapRefusedWhileInFlight: a swap is committing at one
// replica (held) when its answer is lost; the wallet recovers it at a
// replica whose clock is past the outputs' withdraw window, which refuses
// it (FailedPrecondition, Definitive). Before the fix the wallet ended the
// swap (inputs fresh, outputs dropped) and the original then committed:
// EUR 1.00 shown fresh that the bank held spent, the outputs in no wallet.
// Now the swap is kept pending, the bank not showing it committed; the
// original commits just after the next retry is refused, and the wallet,
// asking the bank what it signed, finishes the swap from it: outputs held,
// inputs spent, the wallet's money the bank's.
func TestRecoveredSwapRefusedWhileInFlight(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, false, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	rep, err := w.Recover(ctx, s.later)
	if err != nil {
		t.Fatalf("Recover at the replica past the window: %v", err)
	}
	if s.later.swaps.Load() != 1 {
		t.Fatalf("%d refusals at the replica, want the retry refused", s.later.swaps.Load())
	}
	if n, _ := w.PendingSwaps(); n != 1 || len(rep.Swaps) != 1 || rep.Swaps[0].Outcome != wallet.SwapKeptPending || rep.Swaps[0].Reason == "" {
		t.Fatalf("after the refusal, the original in flight: %d swaps pending, report %+v; want it kept pending, and said why", n, rep.Swaps)
	}
	if bal, _ := w.Balance(); bal.Fresh.String() != "EUR:1.00" || bal.Pending.String() != "EUR:1.00" {
		t.Fatalf("kept pending: %s fresh, %s pending; want EUR:1.00 each", bal.Fresh, bal.Pending)
	}
	s.f.checkConservation(t, w)

	s.releaseAfterRefusal(t)
	rep, err = w.Recover(ctx, s.later)
	if err != nil {
		t.Fatalf("Recover once the original committed: %v", err)
	}
	if s.later.swaps.Load() != 2 {
		t.Fatalf("%d refusals at the replica, want the second retry refused too", s.later.swaps.Load())
	}
	if n, _ := w.PendingSwaps(); n != 0 || swapsOf(rep, wallet.SwapCompleted) != 1 {
		t.Fatalf("after the original committed: %d swaps pending, report %+v; want it completed and said so", n, rep.Swaps)
	}
	bal, _ := w.Balance()
	if bal.Pending.Value != 0 || bal.Fresh.String() != "EUR:2.00" { // the test keys charge no fees
		t.Fatalf("the wallet holds %s fresh, %s pending; want EUR:2.00, none pending", bal.Fresh, bal.Pending)
	}
	s.f.checkConservation(t, w)
	// Every coin it holds fresh the bank takes: nothing was spent twice.
	if _, err := w.Return(ctx, s.f.bankc, bal.Fresh); err != nil {
		t.Fatalf("returning every coin: %v", err)
	}
	s.f.checkConservation(t, w)
	if rep, err := w.Recover(ctx, s.f.bankc); err != nil || len(rep.Swaps) != 0 {
		t.Errorf("the next Recover: %+v, %v; want the completion reported once", rep, err)
	}
}

// TestRecoveredSwapRefusedNeverCommits: the same, but the original fails
// in its commit (the replica died): nothing commits. The swap stays
// pending, its inputs reserved, while the refusal stands within
// SwapRefusalHorizon of its last send; past it, it ends as refused, its
// inputs fresh, and they are spent as any.
func TestRecoveredSwapRefusedNeverCommits(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, true, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	s.releaseAfterRefusal(t)
	for i := range 2 {
		rep, err := w.Recover(ctx, s.later)
		if err != nil {
			t.Fatalf("Recover %d: %v", i, err)
		}
		if n, _ := w.PendingSwaps(); n != 1 || swapsOf(rep, wallet.SwapKeptPending) != 1 {
			t.Fatalf("Recover %d, within the horizon: %d swaps pending, report %+v; want it kept pending", i, n, rep.Swaps)
		}
		if until := rep.Swaps[0].Until; until.IsZero() {
			t.Errorf("kept pending until %v", until)
		}
		s.f.checkConservation(t, w)
		// Other work goes on meanwhile, with the other coins: a swap at
		// the replica (elsewhere the kept one's retry goes through) gets
		// past the one kept pending, to be refused itself.
		if i == 0 {
			if _, err := w.Swap(ctx, s.later, ecash.MustParseAmount("EUR:0.01")); err == nil || errors.Is(err, wallet.ErrPending) || !bank.Definitive(err) {
				t.Fatalf("a swap of other coins, one kept pending: %v; want its own refusal", err)
			}
		}
		s.clk.Add(int64(wallet.SwapRefusalHorizon / 2)) // retries do not move the horizon on
	}
	rep, err := w.Recover(ctx, s.later)
	if err != nil {
		t.Fatalf("Recover past the horizon: %v", err)
	}
	if n, _ := w.PendingSwaps(); n != 0 || swapsOf(rep, wallet.SwapRefused) != 1 {
		t.Fatalf("past the horizon: %d swaps pending, report %+v; want it ended as refused", n, rep.Swaps)
	}
	bal, _ := w.Balance()
	if bal.Pending.Value != 0 {
		t.Fatalf("after the refusal: %s pending", bal.Pending)
	}
	s.f.checkConservation(t, w)
	s.clk.Store(0) // back to the bank's time, which dates a return's request
	if _, err := w.Return(ctx, s.f.bankc, bal.Fresh); err != nil {
		t.Fatalf("returning every coin, the refused swap's inputs among them: %v", err)
	}
	s.f.checkConservation(t, w)
}

// TestSwapNeverSentRefused: a swap the wallet sends for the first time
// and the bank refuses for good ends at once, its inputs fresh, as
// before: no original of it can be in flight.
func TestSwapNeverSentRefused(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, false, currentKeys)
	if _, err := s.w.Swap(ctx, s.later, ecash.MustParseAmount("EUR:1.00")); err == nil || !bank.Definitive(err) {
		t.Fatalf("swap at the replica past the window: %v, want its refusal", err)
	}
	if n, _ := s.w.PendingSwaps(); n != 0 || fresh(t, s.w) != "EUR:2.00" {
		t.Fatalf("%d swaps pending, %s fresh; want none, EUR:2.00", n, fresh(t, s.w))
	}
	s.f.checkConservation(t, s.w)
}

// TestRecoveredReissueRefusedWhileInFlight: a recoup of a revoked coin
// that came from a swap, by re-issue, committing at one replica (held)
// when its answer is lost; its retry at a replica past the outputs'
// withdraw window is refused. It is kept pending; the original commits
// just after the next retry is refused, and the wallet finishes the
// re-issue from the bank's signatures.
func TestRecoveredReissueRefusedWhileInFlight(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, false, currentKeys)
	w := s.w
	// A coin of EUR:0.04 swapped for EUR:0.01, EUR:0.02 and EUR:0.01: a
	// coin of EUR:0.02 that came from a swap, then revoked.
	if _, err := w.Swap(ctx, s.f.bankc, ecash.MustParseAmount("EUR:0.04")); err != nil {
		t.Fatal(err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, s.f, keys(t), ks, 2, time.Now())
	s.arm(t, false, currentKeys)
	if _, err := w.Recoup(ctx, s.first); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("recoup whose re-issue's answer was lost: %v, want ErrPending", err)
	}
	before, _ := w.Balance()
	rep, err := w.Recover(ctx, s.later)
	if err != nil {
		t.Fatalf("Recover at the replica past the window: %v", err)
	}
	if n, _ := w.PendingSwaps(); n != 1 || swapsOf(rep, wallet.SwapKeptPending) != 1 || !rep.Swaps[0].Recoup {
		t.Fatalf("after the refusal, the original in flight: %d pending, report %+v; want the re-issue kept pending", n, rep.Swaps)
	}
	s.f.checkConservation(t, w)

	s.releaseAfterRefusal(t)
	rep, err = w.Recover(ctx, s.later)
	if err != nil {
		t.Fatalf("Recover once the original committed: %v", err)
	}
	if n, _ := w.PendingSwaps(); n != 0 || swapsOf(rep, wallet.SwapCompleted) != 1 {
		t.Fatalf("after the original committed: %d pending, report %+v; want it completed", n, rep.Swaps)
	}
	after, _ := w.Balance()
	if after.Pending.Value != 0 || after.Fresh.Value != before.Fresh.Value+before.Pending.Value {
		t.Fatalf("the wallet holds %s fresh, %s pending; before %s fresh, %s pending: want the re-issued coins fresh", after.Fresh, after.Pending, before.Fresh, before.Pending)
	}
	s.f.checkConservation(t, w)
	if _, err := w.Return(ctx, s.f.bankc, ecash.MustParseAmount("EUR:0.02")); err != nil {
		t.Fatalf("returning the re-issued value: %v", err)
	}
	s.f.checkConservation(t, w)
}

// TestRecoveredOldSwapRefused: a swap persisted by a build before send
// records (none stored: when it was sent is unknown) refused when
// recovered is kept pending for the horizon from that recovery, not ended
// at once; a send record an older build left behind, its swap settled, is
// dropped by the next Recover.
func TestRecoveredOldSwapRefused(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, true, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	close(s.hs.release)
	if err := <-s.first.original; err == nil {
		t.Fatal("the original committed; the test needs it failed")
	}
	if err := wallet.DropSwapSent(w); err != nil {
		t.Fatal(err)
	}
	if err := wallet.LeaveSwapSent(w, ecash.HashOf([]byte("a swap an older build settled"))); err != nil {
		t.Fatal(err)
	}
	s.clk.Add(int64(2 * wallet.SwapRefusalHorizon)) // long after it was persisted
	rep, err := w.Recover(ctx, s.later)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 1 || swapsOf(rep, wallet.SwapKeptPending) != 1 {
		t.Fatalf("an old swap refused: %d pending, report %+v; want it kept pending", n, rep.Swaps)
	}
	if n, _ := wallet.SwapSentRecords(w); n != 1 {
		t.Errorf("%d send records, want the pending swap's only", n)
	}
	s.clk.Add(int64(wallet.SwapRefusalHorizon))
	if rep, err = w.Recover(ctx, s.later); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 0 || swapsOf(rep, wallet.SwapRefused) != 1 {
		t.Fatalf("past the horizon from its first recovery: %d pending, report %+v; want it ended", n, rep.Swaps)
	}
	if n, _ := wallet.SwapSentRecords(w); n != 0 {
		t.Errorf("%d send records left, want none", n)
	}
	s.f.checkConservation(t, w)
}

// TestKeptSwapCompletedReported: a swap reported kept pending is, once
// its original commits, most often finished by its next retry's answer
// (the bank finds the original's record first: no refusal). Recover
// reports it completed then too: a swap said to be kept pending does not
// leave the report unexplained.
func TestKeptSwapCompletedReported(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, false, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	rep, err := w.Recover(ctx, s.later)
	if err != nil || swapsOf(rep, wallet.SwapKeptPending) != 1 {
		t.Fatalf("Recover at the replica past the window: %+v, %v; want it kept pending", rep, err)
	}
	close(s.hs.release)
	if err := <-s.first.original; err != nil {
		t.Fatalf("the original: %v", err)
	}
	// The replica answers the retry from the original's record now.
	if rep, err = w.Recover(ctx, s.later); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 0 || len(rep.Swaps) != 1 || rep.Swaps[0].Outcome != wallet.SwapCompleted {
		t.Fatalf("after the original committed: %d pending, report %+v; want it reported completed", n, rep.Swaps)
	}
	if rep, err = w.Recover(ctx, s.later); err != nil || len(rep.Swaps) != 0 {
		t.Errorf("the next Recover: %+v, %v; want the completion reported once", rep, err)
	}
	s.f.checkConservation(t, w)
}

// unavailableSwaps answers every swap Unavailable, as a bank that took
// it and whose answer was lost.
type unavailableSwaps struct{ pb.BankClient }

func (unavailableSwaps) Swap(context.Context, *pb.SwapRequest, ...grpc.CallOption) (*pb.SwapResponse, error) {
	return nil, status.Error(codes.Unavailable, "the bank did not answer")
}

// TestSwapSentClockBack: a retry sent while the wallet's clock was
// behind (set right afterwards) does not move the swap's last send back:
// the horizon runs from the latest send time the wallet recorded, so the
// clock set right does not end the wait for an original still in flight.
func TestSwapSentClockBack(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, false, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	s.clk.Store(int64(-2 * wallet.SwapRefusalHorizon))
	if _, err := w.Recover(ctx, unavailableSwaps{s.f.bankc}); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("Recover with the clock behind, the retry unanswered: %v, want ErrPending", err)
	}
	s.clk.Store(0)
	rep, err := w.Recover(ctx, s.later)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 1 || swapsOf(rep, wallet.SwapKeptPending) != 1 {
		t.Fatalf("the clock set right, the original in flight: %d pending, report %+v; want it kept pending", n, rep.Swaps)
	}
	s.f.checkConservation(t, w)
	close(s.hs.release)
	if err := <-s.first.original; err != nil {
		t.Fatalf("the original: %v", err)
	}
	if _, err := w.Recover(ctx, s.f.bankc); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 0 {
		t.Fatalf("%d swaps pending once the original committed", n)
	}
	s.f.checkConservation(t, w)
}

// issuedElsewhere refuses every swap as ErrAlreadyIssued (its outputs
// signed in another request: a copy of the wallet's, say), a refusal an
// earlier send of the swap meets too.
type issuedElsewhere struct{ pb.BankClient }

func (issuedElsewhere) Swap(context.Context, *pb.SwapRequest, ...grpc.CallOption) (*pb.SwapResponse, error) {
	return nil, status.Error(codes.AlreadyExists, bank.ErrAlreadyIssued.Error())
}

// TestKeptSwapEndedReported: a swap Recover reported kept pending that a
// later retry ends for good otherwise than past the horizon (here
// ErrAlreadyIssued; a double-spend proof is the other way) is reported
// once as refused, not dropped from the report unsaid (before: listed
// "kept pending" until X, then never again).
func TestKeptSwapEndedReported(t *testing.T) {
	ctx := context.Background()
	s := newInflightSetup(t, true, currentKeys)
	w := s.w
	s.swapAnswerLost(t)
	rep, err := w.Recover(ctx, s.later)
	if err != nil || swapsOf(rep, wallet.SwapKeptPending) != 1 {
		t.Fatalf("Recover at the replica past the window: %+v, %v; want it kept pending", rep, err)
	}
	close(s.hs.release)
	if err := <-s.first.original; err == nil {
		t.Fatal("the original committed; want it failed")
	}
	if rep, err = w.Recover(ctx, issuedElsewhere{s.f.bankc}); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.PendingSwaps(); n != 0 || len(rep.Swaps) != 1 || rep.Swaps[0].Outcome != wallet.SwapRefused || rep.Swaps[0].Reason == "" {
		t.Fatalf("after the retry refused as issued elsewhere: %d pending, report %+v; want it reported refused", n, rep.Swaps)
	}
	if rep, err = w.Recover(ctx, s.f.bankc); err != nil || len(rep.Swaps) != 0 {
		t.Errorf("the next Recover: %+v, %v; want the end reported once", rep, err)
	}
}

// TestSwapRefusalHorizonOutlastsCommit: a recovered swap refused for good
// is ended only once no send of it can still commit. The bank's store
// commits a swap only within bank.MaxCommitDelay of when a replica took
// it, by its clock, which may run ecash.MaxClockSkew from the bank's and
// the wallet's: the wallet's horizon must outlast that.
func TestSwapRefusalHorizonOutlastsCommit(t *testing.T) {
	if need := bank.MaxCommitDelay + 2*ecash.MaxClockSkew; wallet.SwapRefusalHorizon <= need {
		t.Fatalf("SwapRefusalHorizon %v does not outlast the bank's commit delay and the skews (%v)", wallet.SwapRefusalHorizon, need)
	}
}
