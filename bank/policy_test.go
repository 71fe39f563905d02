package bank_test

import (
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
)

// An account whose last posting is stamped on a later day than the clock
// (a replica's clock ahead, PostingTime) is still locked by failures
// counted today: the lock is judged on the day the failures are counted.
func TestLockedOnTheClocksDay(t *testing.T) {
	now := time.Date(2030, 1, 1, 23, 0, 0, 0, time.UTC)
	a := bank.Account{LastPosted: now.Add(26 * time.Hour)}
	for range bank.MaxAuthFailures {
		a.RecordFailure(now)
	}
	if err := a.CanSpend(1, now); !errors.Is(err, bank.ErrAccountLocked) {
		t.Errorf("CanSpend after %d failures today = %v, want ErrAccountLocked", bank.MaxAuthFailures, err)
	}
}
