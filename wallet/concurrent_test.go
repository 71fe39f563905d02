package wallet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// One wallet used from several goroutines at once (it says it is safe for
// concurrent use): withdrawals, swaps, key-set refreshes and KeySet share
// the cached key set. Run with -race.
func TestConcurrentWalletUse(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:40.00", "EUR:10.00")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 4 {
		wg.Go(func() {
			for range 3 {
				if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.23"), nil); err != nil {
					errs <- err
				}
				if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
					errs <- err
				}
				if ks, err := w.KeySet(); err != nil {
					errs <- err
				} else if ks.Currency != "EUR" || len(ks.Denominations) == 0 {
					errs <- fmt.Errorf("KeySet gave %s with %d denominations", ks.Currency, len(ks.Denominations))
				}
			}
		})
	}
	wg.Go(func() {
		for range 3 {
			if _, err := w.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.64")); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	// 10.00 withdrawn first, then twelve of 1.23; the swaps move value.
	bal, err := w.Balance()
	if err != nil || bal.Fresh.String() != "EUR:24.76" {
		t.Fatalf("balance %v, %v", bal.Fresh, err)
	}
	f.checkConservation(t, w)
}

// heldWithdrawBank holds its first Withdraw call until released.
type heldWithdrawBank struct {
	pb.BankClient
	holdFirst
}

func (b *heldWithdrawBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	b.hold()
	return b.BankClient.Withdraw(ctx, in, opts...)
}

// TestRecoverLeavesARequestInFlight: Recover does not send a withdrawal
// another call of the wallet is sending (two copies in flight: a
// definitive refusal of one would drop the pending record of the other,
// with its coins); the call that sends it finishes it.
func TestRecoverLeavesARequestInFlight(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:5.00", "EUR:1.00")
	held := &heldWithdrawBank{BankClient: f.bankc, holdFirst: newHoldFirst()}
	done := make(chan error, 1)
	go func() {
		_, err := w.Withdraw(ctx, held, ecash.MustParseAmount("EUR:0.50"), nil)
		done <- err
	}()
	<-held.entered
	if _, err := w.Recover(ctx, held); err != nil {
		t.Fatalf("recover beside a withdrawal in flight: %v", err)
	}
	if n := held.calls.Load(); n != 1 {
		t.Fatalf("the request was sent %d times while in flight, want once", n)
	}
	close(held.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, err := w.Balance(); err != nil || b.Fresh != ecash.MustParseAmount("EUR:1.50") {
		t.Fatalf("balance %+v, %v; want EUR:1.50", b, err)
	}
	f.checkConservation(t, w)
}

// heldKeysBank holds its first GetKeys call until released.
type heldKeysBank struct {
	pb.BankClient
	holdFirst
}

func (b *heldKeysBank) GetKeys(ctx context.Context, in *pb.GetKeysRequest, opts ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	b.hold()
	return b.BankClient.GetKeys(ctx, in, opts...)
}

// TestRecoverSendsNoSettledRequest: Recover lists the pending withdrawals,
// then fetches the key set; meanwhile the call sending one of them has it
// refused for funds, which drops it, and the funds arrive. Recover must not
// send its stale copy (the bank would now take it, and its coins, with the
// record gone, would be stored nowhere).
func TestRecoverSendsNoSettledRequest(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:1.00") // the account is empty
	acct, err := w.Account()
	if err != nil {
		t.Fatal(err)
	}
	sending := &heldWithdrawBank{BankClient: f.bankc, holdFirst: newHoldFirst()}
	withdrawn := make(chan error, 1)
	go func() {
		_, err := w.Withdraw(ctx, sending, ecash.MustParseAmount("EUR:0.50"), nil)
		withdrawn <- err
	}()
	<-sending.entered
	clk.add(2 * wallet.KeySetMaxAge) // Recover fetches the key set after listing
	listing := &heldKeysBank{BankClient: f.bankc, holdFirst: newHoldFirst()}
	recovered := make(chan error, 1)
	go func() { _, err := w.Recover(ctx, listing); recovered <- err }()
	<-listing.entered
	close(sending.release)
	if err := <-withdrawn; err == nil {
		t.Fatal("a withdrawal from an empty account went through")
	}
	if _, err := f.bank.Credit(ctx, acct, ecash.MustParseAmount("EUR:5.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	close(listing.release)
	if err := <-recovered; err != nil {
		t.Fatalf("recover: %v", err)
	}
	if got := f.balance(t, acct); got != 500 {
		t.Fatalf("account holds %d after recover, want 500: a settled request was sent again", got)
	}
	f.checkConservation(t, w)
}
