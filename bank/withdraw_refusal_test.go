package bank_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// holdStore holds the first Withdraw commit until release is closed,
// telling arrived when it is held: a withdrawal in flight (at another
// replica, or in the commit pipeline) while its retry is answered.
type holdStore struct {
	*pebblestore.Store
	held    sync.Once
	arrived chan struct{} // nil: nothing is held
	release chan struct{}
	// beforeRefuse, if set, runs once before the first RefuseWithdrawal.
	beforeRefuse func()
}

func (s *holdStore) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	if s.arrived != nil {
		s.held.Do(func() {
			close(s.arrived)
			<-s.release
		})
	}
	return s.Store.Withdraw(ctx, op)
}

func (s *holdStore) RefuseWithdrawal(ctx context.Context, op bank.RefuseWithdrawalOp) ([][]byte, error) {
	if f := s.beforeRefuse; f != nil {
		s.beforeRefuse = nil
		f()
	}
	return s.Store.RefuseWithdrawal(ctx, op)
}

// sent is an error as a wallet gets it over gRPC.
func sent(ctx context.Context, err error) *status.Status {
	return status.Convert(bank.ToStatus(ctx, err, nil))
}

// TestWithdrawRetryRefusedWhileOriginalCommits: a wallet's withdraw
// request is committing at one replica (held in its store's commit) when
// its retry reaches a replica whose clock is past the denomination's
// withdraw window. The retry finds no record and is refused
// (ErrDenominationExpired, a FailedPrecondition the wallet takes as final:
// it drops the request and parks its planchet indices). Then the original
// commits. Before refusals were recorded it debited the account for coins
// the wallet had forgotten; now the refusal is recorded first, the
// original's commit finds it and is refused with it, and nothing moves.
func TestWithdrawRetryRefusedWhileOriginalCommits(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	body, sig := e.signedWithdraw(0, e.now)
	balance, logged := e.balance(), e.logSize()

	hs := &holdStore{Store: e.s, arrived: make(chan struct{}), release: make(chan struct{})}
	first := bank.New(hs, e.keys, func() time.Time { return e.now }, nil)
	later := bank.New(e.s, e.keys, func() time.Time { return e.cheap.WithdrawEnd }, nil)

	type answer struct {
		sigs [][]byte
		err  error
	}
	original := make(chan answer)
	go func() {
		sigs, err := first.Withdraw(ctx, body, sig)
		original <- answer{sigs, err}
	}()
	<-hs.arrived // signed, checked, committing

	_, err := later.Withdraw(ctx, body, sig)
	retry := sent(ctx, err)
	if !errors.Is(err, ecash.ErrDenominationExpired) || retry.Code() != codes.FailedPrecondition || !bank.Definitive(retry.Err()) {
		t.Fatalf("retry past the window: %v (gRPC %v); want ErrDenominationExpired, FailedPrecondition", err, retry.Code())
	}
	close(hs.release)
	got := <-original
	if got.err == nil {
		t.Fatalf("the original committed after its retry was refused for good: %d signatures; balance %d → %d",
			len(got.sigs), balance, e.balance())
	}
	orig := sent(ctx, got.err)
	if orig.Code() != retry.Code() || orig.Message() != retry.Message() {
		t.Errorf("the original was answered %v %q, the retry %v %q; want the one recorded refusal", orig.Code(), orig.Message(), retry.Code(), retry.Message())
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Errorf("balance %d → %d, log %d → %d entries; want nothing moved or logged", balance, e.balance(), logged, e.logSize())
	}
	// Every later send, at either replica, gets the refusal.
	for _, b := range []*bank.Bank{e.b, later} {
		_, err := b.Withdraw(ctx, body, sig)
		if st := sent(ctx, err); st.Code() != retry.Code() || st.Message() != retry.Message() {
			t.Errorf("a later send: %v %q; want the recorded refusal", st.Code(), st.Message())
		}
	}
}

// TestWithdrawHeldPastItsAge: a withdrawal passed the bank's checks and
// then stalled before its commit (a replica's process paused) for more
// than a day. Meanwhile its retry was refused for its age, recorded, and
// the record pruned. Resumed, the original used to commit: the account
// debited for coins its wallet had dropped. The store refuses a
// withdrawal its clock finds past the request's date plus MaxWithdrawAge
// (WithdrawOp.NotAfter, ErrTooLate); the refusal is recorded as any
// other, and nothing moves.
func TestWithdrawHeldPastItsAge(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100, nil)
	body, sig := e.signedWithdraw(0, e.now)
	balance, logged := e.balance(), e.logSize()
	hs := &holdStore{Store: e.s, arrived: make(chan struct{}), release: make(chan struct{})}
	paused := bank.New(hs, e.keys, func() time.Time { return e.now }, nil)
	original := make(chan error)
	go func() {
		_, err := paused.Withdraw(ctx, body, sig)
		original <- err
	}()
	<-hs.arrived

	e.now = e.now.Add(bank.MaxWithdrawAge + time.Second)
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.Is(err, bank.ErrTooOld) {
		t.Fatalf("the retry: %v, want ErrTooOld", err)
	}
	e.now = e.now.Add(bank.RefusalHorizon + time.Second)
	if n, err := e.b.PruneRefusals(ctx); err != nil || n != 1 {
		t.Fatalf("PruneRefusals = %d, %v; want the retry's refusal pruned", n, err)
	}
	close(hs.release)
	err := <-original
	if err == nil {
		t.Fatalf("the original committed a day after its retry was refused: balance %d → %d", balance, e.balance())
	}
	if !errors.Is(err, bank.ErrTooLate) || !bank.Definitive(sent(ctx, err).Err()) {
		t.Errorf("the original: %v; want ErrTooLate, a refusal", err)
	}
	if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); found || !errors.Is(err, bank.ErrTooLate) {
		t.Errorf("Withdrawal = found %v, %v; want the original's refusal recorded", found, err)
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Errorf("balance %d → %d, log %d → %d entries; want nothing moved or logged", balance, e.balance(), logged, e.logSize())
	}
}

// TestWithdrawRetryRefusedAfterOriginalCommitted: the other order. The
// retry is refused (the window closed at its replica's clock) and its
// original commits in between the refusal and its record: recording the
// refusal finds the withdrawal, and the retry is answered with its
// signatures.
func TestWithdrawRetryRefusedAfterOriginalCommitted(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	body, sig := e.signedWithdraw(0, e.now)
	balance := e.balance()
	hs := &holdStore{Store: e.s}
	later := bank.New(hs, e.keys, func() time.Time { return e.cheap.WithdrawEnd }, nil)
	var original [][]byte
	hs.beforeRefuse = func() {
		var err error
		if original, err = e.b.Withdraw(ctx, body, sig); err != nil {
			t.Fatalf("original withdrawal: %v", err)
		}
	}
	got, err := later.Withdraw(ctx, body, sig)
	if err != nil || original == nil || !slices.EqualFunc(got, original, bytes.Equal) {
		t.Fatalf("retry refused while its original committed: %v (same signatures: %v); want the original's signatures",
			err, slices.EqualFunc(got, original, bytes.Equal))
	}
	if e.balance() != balance-1 {
		t.Errorf("balance %d → %d, want one coin debited", balance, e.balance())
	}
	if sigs, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); err != nil || !found || !slices.EqualFunc(sigs, original, bytes.Equal) {
		t.Errorf("Withdrawal = found %v, %v; want the withdrawal, no refusal", found, err)
	}
}

// TestWithdrawRefusalStands: a request refused for the balance is refused
// the same way (code and text) when sent again after the account was
// credited, and before the rate is charged: the wallet dropped it, so it
// must never be taken. A new request is taken.
func TestWithdrawRefusalStands(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 1, nil)
	body, sig := e.signedWithdraw(0, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil {
		t.Fatal(err)
	}
	body, sig = e.signedWithdraw(1, e.now)
	_, err := e.b.Withdraw(ctx, body, sig)
	first := sent(ctx, err)
	if !errors.Is(err, bank.ErrInsufficientFunds) || first.Code() != codes.FailedPrecondition {
		t.Fatalf("withdrawal from an empty account: %v, want ErrInsufficientFunds", err)
	}
	if _, err := e.b.Credit(ctx, e.acct, ecash.Amount{Currency: "EUR", Value: 10}, "", ""); err != nil {
		t.Fatal(err)
	}
	logged := e.logSize()
	e.b.LimitAccounts(bank.NewRateLimiter(0.001, 1, 100)) // one new request, then none
	for range 3 {
		_, err := e.b.Withdraw(ctx, body, sig)
		if st := sent(ctx, err); st.Code() != first.Code() || st.Message() != first.Message() || !errors.Is(err, bank.ErrInsufficientFunds) {
			t.Fatalf("the refused request sent again, funds there now: %v %q; want %v %q", st.Code(), st.Message(), first.Code(), first.Message())
		}
	}
	if e.balance() != 10 || e.logSize() != logged {
		t.Fatalf("balance %d, log %d → %d entries; want 10 and nothing logged", e.balance(), logged, e.logSize())
	}
	body, sig = e.signedWithdraw(2, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil {
		t.Fatalf("a new request, the rate unused by the refused one's sends: %v", err)
	}
	if e.balance() != 9 {
		t.Errorf("balance %d after one coin, want 9", e.balance())
	}
}

// TestWithdrawFailuresNotRecorded: what is no refusal, or not a final
// one, is not recorded: a request over the account's rate is taken when
// sent again (TestWithdrawStoreFailureNotRecorded: one whose commit
// failed).
func TestWithdrawFailuresNotRecorded(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	e.b.LimitAccounts(bank.NewRateLimiter(0.001, 1, 100))
	body, sig := e.signedWithdraw(0, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil {
		t.Fatal(err)
	}
	body, sig = e.signedWithdraw(1, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.Is(err, bank.ErrRateLimited) {
		t.Fatalf("second request at a rate of one: %v, want ErrRateLimited", err)
	}
	if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); found || err != nil {
		t.Fatalf("rate-limited request: Withdrawal = found %v, %v; want nothing recorded", found, err)
	}
	fresh := bank.New(e.s, e.keys, func() time.Time { return e.now }, nil)
	if _, err := fresh.Withdraw(ctx, body, sig); err != nil {
		t.Fatalf("the rate-limited request at a bank with rate to spare: %v", err)
	}
}

// commitFailsOnce is a store whose first Withdraw fails as a store that
// cannot be reached does, committing nothing.
type commitFailsOnce struct {
	*pebblestore.Store
	failed bool
}

func (s *commitFailsOnce) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	if !s.failed {
		s.failed = true
		return nil, bank.ErrStoreUnavailable
	}
	return s.Store.Withdraw(ctx, op)
}

// TestWithdrawStoreFailureNotRecorded: a withdrawal whose commit failed
// (the store unreachable: UNAVAILABLE, sent again by its wallet) is no
// refusal. Nothing is recorded under its hash, and it is taken when sent
// again. Recorded, the failure would be a refusal for good, or the store
// would refuse to record it and the answer become one.
func TestWithdrawStoreFailureNotRecorded(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	s := &commitFailsOnce{Store: e.s}
	b := bank.New(s, e.keys, func() time.Time { return e.now }, nil)
	body, sig := e.signedWithdraw(0, e.now)
	_, err := b.Withdraw(ctx, body, sig)
	if st := sent(ctx, err); !errors.Is(err, bank.ErrStoreUnavailable) || st.Code() != codes.Unavailable {
		t.Fatalf("withdrawal whose commit failed: %v (gRPC %v); want ErrStoreUnavailable, Unavailable", err, st.Code())
	}
	if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); found || err != nil {
		t.Fatalf("after the failed commit: Withdrawal = found %v, %v; want nothing recorded", found, err)
	}
	if _, err := b.Withdraw(ctx, body, sig); err != nil {
		t.Fatalf("the request sent again: %v", err)
	}
	if e.balance() != 99 {
		t.Errorf("balance %d, want 99", e.balance())
	}
}

// TestWithdrawRefusalBudget: each recorded refusal is a synced record, so
// an account may have only so many recorded (LimitRefusals), whatever its
// rate lets it send. An account without funds sends fresh requests: the
// first ones, within the budget, are refused for the funds and recorded;
// the next is answered ErrRateLimited (ResourceExhausted: not a refusal,
// its wallet keeps the request and sends it again), and nothing is
// recorded under its hash. Sends of a recorded refusal are answered from
// the record, using no budget. With budget again, the request is refused
// and recorded.
func TestWithdrawRefusalBudget(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 1, nil)
	body, sig := e.signedWithdraw(0, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil { // the account emptied
		t.Fatal(err)
	}
	e.b.LimitRefusals(bank.NewRateLimiter(0.001, 2, 100)) // the clock stands still: no token comes back
	var refused [][2][]byte
	for i := range uint64(2) {
		i++
		body, sig := e.signedWithdraw(i, e.now)
		if _, err := e.b.Withdraw(ctx, body, sig); !errors.As(err, new(*bank.WithdrawRefusal)) || !errors.Is(err, bank.ErrInsufficientFunds) {
			t.Fatalf("request %d within the budget: %v, want the recorded ErrInsufficientFunds", i, err)
		}
		refused = append(refused, [2][]byte{body, sig})
	}
	body, sig = e.signedWithdraw(3, e.now)
	for range 2 {
		_, err := e.b.Withdraw(ctx, body, sig)
		st := sent(ctx, err)
		if !errors.Is(err, bank.ErrRateLimited) || st.Code() != codes.ResourceExhausted || bank.Definitive(st.Err()) {
			t.Fatalf("a refusal over the budget: %v (gRPC %v); want ErrRateLimited, ResourceExhausted, not definitive", err, st.Code())
		}
	}
	if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); found || err != nil {
		t.Fatalf("over the budget: Withdrawal = found %v, %v; want nothing recorded", found, err)
	}
	for _, r := range refused {
		if _, err := e.b.Withdraw(ctx, r[0], r[1]); !errors.As(err, new(*bank.WithdrawRefusal)) {
			t.Fatalf("a recorded refusal sent again, the budget spent: %v, want the recorded refusal", err)
		}
	}
	e.b.LimitRefusals(bank.NewRateLimiter(0.001, 1, 100))
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.As(err, new(*bank.WithdrawRefusal)) || !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("the request with budget again: %v, want the recorded ErrInsufficientFunds", err)
	}
}

// pruneCancels cancels the context of WatchRefusals once it pruned.
type pruneCancels struct {
	*pebblestore.Store
	cancel context.CancelFunc
	pruned int64
}

func (s *pruneCancels) PruneWithdrawRefusals(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.Store.PruneWithdrawRefusals(ctx, before)
	s.pruned += n
	s.cancel()
	return n, err
}

// TestWithdrawRefusalPrunedAfterHorizon: a recorded refusal is kept for
// RefusalHorizon (it must outlive any original still in flight), then
// pruned. The wallet dropped the request when it was refused; a copy of
// it sent after the pruning, once the account was credited, used to be
// decided afresh and taken: the account debited for signatures only the
// wallet could unblind, and it had forgotten them. Now it is refused for
// its age (ErrTooOld, recorded again) and nothing moves.
// WatchRefusals prunes at once when it starts, and returns when its
// context is done.
func TestWithdrawRefusalPrunedAfterHorizon(t *testing.T) {
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherCS, 2, 1, nil)
	body, sig := e.signedWithdraw(0, e.now)
	if _, err := e.b.Withdraw(ctx, body, sig); err != nil { // the account emptied
		t.Fatal(err)
	}
	// Dated as far ahead as the bank takes: the youngest a request can be
	// when its refusal is pruned.
	body, sig = e.signedWithdraw(1, e.now.Add(ecash.MaxClockSkew))
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.As(err, new(*bank.WithdrawRefusal)) {
		t.Fatalf("withdrawal from an empty account: %v, want a recorded refusal", err)
	}
	if _, err := e.b.Credit(ctx, e.acct, ecash.Amount{Currency: "EUR", Value: 10}, "", ""); err != nil {
		t.Fatal(err)
	}
	refusedAt := e.now
	e.now = refusedAt.Add(bank.RefusalHorizon)
	if n, err := e.b.PruneRefusals(ctx); err != nil || n != 0 {
		t.Fatalf("PruneRefusals at the horizon = %d, %v; want nothing pruned", n, err)
	}
	if _, err := e.b.Withdraw(ctx, body, sig); !errors.As(err, new(*bank.WithdrawRefusal)) || !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("the refused request at the horizon: %v, want the recorded refusal", err)
	}
	e.now = refusedAt.Add(bank.RefusalHorizon + time.Second)
	wctx, cancel := context.WithCancel(ctx)
	ps := &pruneCancels{Store: e.s, cancel: cancel}
	bank.New(ps, e.keys, func() time.Time { return e.now }, nil).WatchRefusals(wctx, time.Hour)
	if ps.pruned != 1 {
		t.Fatalf("WatchRefusals past the horizon pruned %d refusals, want 1", ps.pruned)
	}
	if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(body)); found || err != nil {
		t.Fatalf("after pruning: Withdrawal = found %v, %v; want nothing recorded", found, err)
	}
	balance, logged := e.balance(), e.logSize()
	for i := range 2 {
		_, err := e.b.Withdraw(ctx, body, sig)
		if !errors.Is(err, bank.ErrTooOld) || !bank.Definitive(sent(ctx, err).Err()) {
			t.Fatalf("send %d of the request after its refusal was pruned: %v; want ErrTooOld, a refusal", i, err)
		}
		if i == 1 && !errors.As(err, new(*bank.WithdrawRefusal)) {
			t.Fatalf("the second send after pruning: %v, want the recorded refusal", err)
		}
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Errorf("balance %d, log %d after the refused sends; want %d, %d", e.balance(), e.logSize(), balance, logged)
	}
}

// TestWithdrawAge: a new withdraw request is taken until MaxWithdrawAge
// after its date and refused after (ErrTooOld, recorded: every
// later send gets the same answer); a retry of one that committed is
// answered from its record however old.
func TestWithdrawAge(t *testing.T) {
	if bank.MaxWithdrawAge+ecash.MaxClockSkew >= bank.RefusalHorizon {
		t.Fatalf("MaxWithdrawAge %v + skew %v reaches RefusalHorizon %v: a request whose refusal was pruned could be taken",
			bank.MaxWithdrawAge, ecash.MaxClockSkew, bank.RefusalHorizon)
	}
	ctx := t.Context()
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100, nil)
	start := e.now
	taken, takenSig := e.signedWithdraw(0, start.Add(-bank.MaxWithdrawAge))
	want, err := e.b.Withdraw(ctx, taken, takenSig)
	if err != nil {
		t.Fatalf("a request exactly MaxWithdrawAge old: %v, want it taken", err)
	}
	old, oldSig := e.signedWithdraw(1, start.Add(-bank.MaxWithdrawAge-time.Second))
	balance, logged := e.balance(), e.logSize()
	for i := range 2 {
		_, err := e.b.Withdraw(ctx, old, oldSig)
		st := sent(ctx, err)
		if !errors.Is(err, bank.ErrTooOld) || st.Code() != codes.InvalidArgument || bank.BadTimestamp(st.Err()) {
			t.Fatalf("send %d of a request MaxWithdrawAge+1s old: %v (gRPC %v); want ErrTooOld, InvalidArgument, not a date ahead", i, err, st.Code())
		}
		if _, found, err := e.s.Withdrawal(ctx, ecash.HashOf(old)); !errors.As(err, new(*bank.WithdrawRefusal)) || found {
			t.Fatalf("send %d: the store has found %v, %v; want the refusal recorded", i, found, err)
		}
	}
	if e.balance() != balance || e.logSize() != logged {
		t.Errorf("balance %d, log %d after the refusals; want %d, %d", e.balance(), e.logSize(), balance, logged)
	}
	e.now = start.Add(30 * 24 * time.Hour)
	got, err := e.b.Withdraw(ctx, taken, takenSig)
	if err != nil || !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("a retry of the committed request a month on: %v; want its signatures from the record", err)
	}
}
