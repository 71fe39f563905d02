package wallet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/blindbank/blindbank/ecash"
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
	if err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	// 10.00 withdrawn first, then twelve of 1.23; the swaps move value.
	bal, err := w.Balance()
	if err != nil || bal.Fresh.String() != "EUR:24.76" {
		t.Fatalf("balance %v, %v", bal.Fresh, err)
	}
	f.checkConservation(t, w)
}
