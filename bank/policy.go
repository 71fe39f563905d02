package bank

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/blindbank/blindbank/ecash"
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
		return &LimitError{Amount: amount, Limit: l}
	}
	if l := a.Limits.PerDay; l > 0 && (amount > l || a.SpentOn(now) > l-amount) {
		return &LimitError{Amount: amount, Limit: l, Daily: true, Spent: a.SpentOn(now)}
	}
	return nil
}

// LimitError is a spending-limit refusal: errors.Is(err, ErrOverLimit).
// Its amounts are minor units; the stores know no currency, so the bank
// sets Currency (inCurrency) and they read as amounts, "EUR:20.00".
type LimitError struct {
	Amount   int64 // what the operation would spend
	Limit    int64 // the limit it exceeds
	Daily    bool  // the daily limit (else the per-transaction one)
	Spent    int64 // spent today already (the daily limit)
	Currency string
}

func (e *LimitError) Error() string {
	if e.Daily {
		return fmt.Sprintf("%v: %s more would exceed the daily limit of %s (spent %s today)",
			ErrOverLimit, e.money(e.Amount), e.money(e.Limit), e.money(e.Spent))
	}
	return fmt.Sprintf("%v: %s exceeds the per-transaction limit of %s", ErrOverLimit, e.money(e.Amount), e.money(e.Limit))
}

func (e *LimitError) Is(target error) bool { return target == ErrOverLimit }

// money shows v in the error's currency, or as minor units without one.
func (e *LimitError) money(v int64) string {
	if e.Currency == "" || v < 0 {
		return strconv.FormatInt(v, 10)
	}
	return ecash.Amount{Currency: e.Currency, Value: uint64(v)}.String()
}

// inCurrency names the bank's currency in a spending-limit refusal err
// carries, so that it reads as amounts; any other err is returned as is.
func (b *Bank) inCurrency(err error) error {
	if le, ok := errors.AsType[*LimitError](err); ok {
		le.Currency = b.keys.Currency
	}
	return err
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
