package wallet_test

import (
	"context"
	"errors"
	"slices"
	"sync"
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

// heldCommitStore holds the first withdrawal's commit until release is
// closed, closing arrived once it is held.
type heldCommitStore struct {
	bank.Store
	once             sync.Once
	arrived, release chan struct{}
}

func (s *heldCommitStore) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	s.once.Do(func() {
		close(s.arrived)
		<-s.release
	})
	return s.Store.Withdraw(ctx, op)
}

// answerLostInFlight sends a withdrawal to a bank whose commit is held,
// and tells the wallet the bank did not answer: the request is in flight.
type answerLostInFlight struct {
	pb.BankClient
	srv      pb.BankServer
	arrived  chan struct{}
	original chan error
}

func (c *answerLostInFlight) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	go func() {
		_, err := c.srv.Withdraw(context.Background(), in)
		c.original <- err
	}()
	<-c.arrived
	return nil, status.Error(codes.Unavailable, "the bank did not answer")
}

// TestRecoveredWithdrawalRefusedWhileInFlight: a withdrawal is committing
// at one replica (held) when its answer is lost; the wallet recovers it at
// another replica whose clock is past the denominations' withdraw window,
// which refuses it for good (FailedPrecondition): the wallet drops it and
// gives its planchet indices to the next withdrawal. The original commit
// then runs. It is refused with the recorded refusal: the account is not
// debited for coins the wallet forgot, and the next withdrawal, on the
// same indices, is taken.
func TestRecoveredWithdrawalRefusedWhileInFlight(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	k := keys(t)
	var end time.Time
	for _, d := range k.Denoms {
		if d.WithdrawEnd.After(end) {
			end = d.WithdrawEnd
		}
	}
	hs := &heldCommitStore{Store: f.bank.Store(), arrived: make(chan struct{}), release: make(chan struct{})}
	first := &answerLostInFlight{BankClient: f.bankc, srv: bank.New(hs, k, time.Now, nil).PublicServer(),
		arrived: hs.arrived, original: make(chan error, 1)}
	later := bank.New(f.bank.Store(), k, func() time.Time { return end }, nil)
	laterc := pb.NewBankClient(serve(t, func(s *grpc.Server) { pb.RegisterBankServer(s, later.PublicServer()) }))
	before := accountBalance(t, f, w)

	if _, err := w.Withdraw(ctx, first, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, laterc)
	if err != nil {
		t.Fatalf("Recover at the replica past the window: %v", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 || len(rep.Refused) != 1 {
		t.Fatalf("after the refusal: %d pending, refusals reported %+v; want it dropped and reported", n, rep.Refused)
	}
	close(hs.release)
	if err := <-first.original; err == nil {
		t.Fatal("the original committed after the wallet dropped its request for a refusal")
	} else if !bank.Definitive(err) {
		t.Errorf("the original's commit: %v, want the recorded refusal", err)
	}
	if got := accountBalance(t, f, w); got != before {
		t.Fatalf("account %d → %d: debited for coins the wallet dropped", before, got)
	}
	f.checkConservation(t, w)

	// The parked indices serve the next withdrawal.
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("the next withdrawal: %v", err)
	}
	if fresh(t, w) != "EUR:1.00" {
		t.Errorf("the wallet holds %s fresh, want EUR:1.00", fresh(t, w))
	}
	f.checkConservation(t, w)
}

// TestRecoveredWithdrawalUnservedDenomination: a withdrawal is committing
// at one replica (held) when its answer is lost; the wallet recovers it at
// another replica that does not serve its denominations yet (its key file
// is older), which refuses it as naming an unknown denomination before it
// checks the signature, recording nothing. The wallet's key set lists the
// denominations, so that replica is behind: the request stays pending
// (stopping nothing else) instead of being dropped, and once the original
// commits a Recover takes its coins. Dropped, the account would be
// debited for coins the wallet forgot.
func TestRecoveredWithdrawalUnservedDenomination(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	k := keys(t)
	hs := &heldCommitStore{Store: f.bank.Store(), arrived: make(chan struct{}), release: make(chan struct{})}
	first := &answerLostInFlight{BankClient: f.bankc, srv: bank.New(hs, k, time.Now, nil).PublicServer(),
		arrived: hs.arrived, original: make(chan error, 1)}
	older := *k
	older.Denoms = slices.DeleteFunc(slices.Clone(k.Denoms), func(d bank.DenomKey) bool { return d.Value.Value < 100 })
	behind := bank.New(f.bank.Store(), &older, time.Now, nil)
	behindc := pb.NewBankClient(serve(t, func(s *grpc.Server) { pb.RegisterBankServer(s, behind.PublicServer()) }))
	// The replica behind is asked for the withdrawal only: the key set
	// is the wallet's own, as a load balancer's replicas would serve it.
	lagging := &withdrawOnly{BankClient: f.bankc, withdraw: behindc}
	before := accountBalance(t, f, w)

	if _, err := w.Withdraw(ctx, first, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal whose answer was lost: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, lagging)
	if err != nil {
		t.Fatalf("Recover at the replica behind: %v", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 || len(rep.Refused) != 0 {
		t.Fatalf("after the replica behind refused it: %d pending, refusals reported %+v; want it kept pending", n, rep.Refused)
	}
	close(hs.release)
	if err := <-first.original; err != nil {
		t.Fatalf("the original's commit: %v", err)
	}
	if got := accountBalance(t, f, w); got == before {
		t.Fatalf("the original did not debit the account (%d)", got)
	}
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatalf("Recover once the original committed: %v", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 || fresh(t, w) != "EUR:1.00" {
		t.Fatalf("after the original committed: %d pending, %s fresh; want its coins, EUR:1.00", n, fresh(t, w))
	}
	f.checkConservation(t, w)
}

// withdrawOnly sends withdrawals to one bank and everything else to
// another.
type withdrawOnly struct {
	pb.BankClient
	withdraw pb.BankClient
}

func (c *withdrawOnly) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	return c.withdraw.Withdraw(ctx, in, opts...)
}
