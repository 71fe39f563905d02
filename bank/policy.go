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
// authentications in one day refuse the account's "login" until the next
// day or an admin unlock. Login is per client here: failures are counted
// per account and source (WithSource: the caller's address), and lock the
// account out for that source only. Account ids are public and Ed25519
// signatures cannot be guessed, so a lock shared by every source would
// protect nothing and hand anyone a way to lock anyone out; per source, a
// stranger forging requests locks out only themself. (A payment order a
// merchant relays is no login of the account: see SubmitCheck.) The rules live here,
// as methods, so every Store applies them identically.

var (
	ErrAccountLocked = errors.New("bank: account locked for this client after repeated failed authentication")
	ErrOverLimit     = errors.New("bank: over the account's spending limit")
)

// MaxAuthFailures failed authentications of an account from one source in
// one day lock the account for that source for the rest of that day.
const MaxAuthFailures = 5

// MaxSourceLen bounds a source's length (a store refuses longer ones).
const MaxSourceLen = 256

// AuthFailures are an account's failed authentications from one source
// on one day: what a store keeps per (account, source).
type AuthFailures struct {
	Day   int64 // the Day they were counted on
	Count int64
}

// Locked reports whether they lock the account out for their source at
// now: on the day they were counted, the clock's (not the account's
// posting day, PostingTime).
func (f AuthFailures) Locked(now time.Time) bool {
	return f.Day == Day(now) && f.Count >= MaxAuthFailures
}

// Record counts one more failure at now (the count starts again each day)
// and reports whether the account is now locked for the source.
func (f *AuthFailures) Record(now time.Time) bool {
	if f.Day != Day(now) {
		*f = AuthFailures{Day: Day(now)}
	}
	f.Count++
	return f.Locked(now)
}

// AuthKeptFrom is the first day whose failed authentications a store keeps
// when it drops earlier days' counts as it counts one at now: the day
// before now's as well as now's. A failure dated ahead, by a replica's clock
// past midnight before the others or by this one's before it is stepped
// back, must not drop the counts of the day the other clocks are still on,
// which lock sources out now. A clock more than a day ahead cannot be told
// apart from time gone by.
func AuthKeptFrom(now time.Time) int64 { return max(Day(now)-1, 0) }

// Limits bound what an account may spend (withdrawals and checks alike), in
// minor units; zero means no limit.
type Limits struct {
	PerTransaction int64
	PerDay         int64
}

// Day is the bank's day number of t: days since the Unix epoch, in UTC.
func Day(t time.Time) int64 { return t.UTC().Unix() / 86400 }

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

// CanSpend checks the limits for spending amount at now (not the balance,
// which the caller checks, nor the lock, which the bank checks per source:
// AuthLocked), on the day of the posting it makes.
func (a *Account) CanSpend(amount int64, now time.Time) error {
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
