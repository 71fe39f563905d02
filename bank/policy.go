package bank

import (
	"errors"
	"fmt"
	"time"
)

// Account policy, after the source document's online-bank flow: a payment
// account has per-transaction and per-day spending limits, and five failed
// authentications in one day lock it until the next day or an admin unlock.
// The rules live here, as methods on Account, so every Store applies them
// identically inside its atomic step.

var (
	ErrAccountLocked = errors.New("bank: account locked after repeated failed authentication")
	ErrOverLimit     = errors.New("bank: over the account's spending limit")
)

// MaxAuthFailures in one day lock an account for the rest of that day.
const MaxAuthFailures = 5

// Limits bound what an account may spend (withdrawals and checks alike), in
// minor units; zero means no limit.
type Limits struct {
	PerTransaction int64
	PerDay         int64
}

// Day is the bank's day number of t: days since the Unix epoch, in UTC.
func Day(t time.Time) int64 { return t.UTC().Unix() / 86400 }

// Locked reports whether the account is locked at now.
func (a *Account) Locked(now time.Time) bool {
	return a.FailDay == Day(now) && a.Failures >= MaxAuthFailures
}

// SpentOn is what the account has spent on now's day.
func (a *Account) SpentOn(now time.Time) int64 {
	if a.SpentDay != Day(now) {
		return 0
	}
	return a.SpentToday
}

// PostingTime is the time an operation that read the clock at t posts
// to the account at: t, or the account's last posting time if that is
// later. Operations read the clock before their cryptography, outside the
// serial commit, so two on one account can commit in the other order than
// their clock readings; stamped this way, an account's postings and its
// spending days follow commit order all the same, which its statements
// (walked in commit order, bounded by time) rely on.
func (a *Account) PostingTime(t time.Time) time.Time {
	if t.Before(a.LastPosted) {
		return a.LastPosted
	}
	return t
}

// CanSpend checks lock and limits for spending amount at now (not the
// balance, which the caller checks).
func (a *Account) CanSpend(amount int64, now time.Time) error {
	// The lock on the clock's day, as failures are counted (RecordFailure);
	// spending on the day of the posting it makes.
	if a.Locked(now) {
		return ErrAccountLocked
	}
	now = a.PostingTime(now)
	if l := a.Limits.PerTransaction; l > 0 && amount > l {
		return fmt.Errorf("%w: %d exceeds the per-transaction limit of %d", ErrOverLimit, amount, l)
	}
	if l := a.Limits.PerDay; l > 0 && (amount > l || a.SpentOn(now) > l-amount) {
		return fmt.Errorf("%w: %d more would exceed the daily limit of %d (spent %d today)", ErrOverLimit, amount, l, a.SpentOn(now))
	}
	return nil
}

// RecordSpend adds amount to today's spending; CanSpend must have passed.
func (a *Account) RecordSpend(amount int64, now time.Time) {
	now = a.PostingTime(now)
	a.SpentToday = a.SpentOn(now) + amount
	a.SpentDay = Day(now)
}

// RecordFailure counts a failed authentication at now and reports whether
// the account is now locked.
func (a *Account) RecordFailure(now time.Time) bool {
	if a.FailDay != Day(now) {
		a.FailDay, a.Failures = Day(now), 0
	}
	a.Failures++
	return a.Locked(now)
}

// Unlock clears today's failures (an admin action).
func (a *Account) Unlock() { a.Failures = 0 }
