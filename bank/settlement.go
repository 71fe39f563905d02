package bank

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Settlement (the source document's clearing, settlement and disbursement):
// merchants' deposits and approved checks accumulate in their accounts;
// the operator lists what each merchant is owed for a period, pays it out
// of the bank (a payout: the account is debited, the money leaves to the
// outside, logged), and gives the merchant the bank's signed statement of
// the period, which the merchant checks against its own receipts
// (merchant.VerifySettlement).

// Owed is one merchant's position for a period: Opening + Credited -
// PaidOut + Other = Closing.
type Owed struct {
	Account  uint64
	Name     string
	Opening  int64 // the balance at the period's start
	Credited int64 // deposits and approved checks posted in the period
	PaidOut  int64 // payouts posted in the period
	Other    int64 // every other posting in the period (refunds, their fees), signed
	Closing  int64 // the balance at the period's end
	Balance  int64 // owed now: the account's balance
}

// Owed lists every merchant account with a balance or with postings in
// [from, to), by account id.
func (b *Bank) Owed(ctx context.Context, from, to time.Time) ([]Owed, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: period from %s to %s", ecash.ErrMalformed, from, to)
	}
	totals, err := b.store.Totals(ctx)
	if err != nil {
		return nil, err
	}
	var out []Owed
	for id := range totals {
		if IsSystem(id) {
			continue
		}
		a, err := b.store.Account(ctx, id)
		if err != nil {
			return nil, err
		}
		if !a.Merchant {
			continue
		}
		o := Owed{Account: id, Name: a.Name, Balance: a.Balance}
		hist, err := b.historySince(ctx, id, from)
		if err != nil {
			return nil, err
		}
		// historySince ends with the last posting before from, if any:
		// the opening balance; else the account began in the period.
		if n := len(hist); n > 0 && hist[n-1].Time.Before(from) {
			o.Opening = hist[n-1].Balance
		}
		o.Closing = o.Opening
		closed := false
		for _, p := range hist { // newest first
			if p.Time.Before(from) {
				break
			}
			if !p.Time.Before(to) {
				continue
			}
			if !closed {
				o.Closing, closed = p.Balance, true
			}
			// Each posting is within ±MaxValue, but a period holds up to
			// maxStatementScan of them: the sums are checked.
			var sum *int64
			v := p.Amount
			switch {
			case p.Kind == KindPayout:
				sum, v = &o.PaidOut, -p.Amount
			case p.Amount > 0 && (p.Kind == KindDeposit || p.Kind == KindCheck):
				sum = &o.Credited
			default:
				sum = &o.Other
			}
			if *sum, err = addInt64(*sum, v); err != nil {
				return nil, fmt.Errorf("%w: account %d's postings from %s to %s; ask for a shorter period", err, id, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
			}
		}
		if o.Balance != 0 || o.Opening != 0 || closed {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b Owed) int { return cmp.Compare(a.Account, b.Account) })
	return out, nil
}

// addInt64 returns a+b, or ErrBalanceOverflow if it does not fit in int64
// (the stores' addBalance).
func addInt64(a, b int64) (int64, error) {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		return 0, ErrBalanceOverflow
	}
	return c, nil
}

// Payout pays amount out of a merchant account to the outside (its
// settlement), never beyond its balance, and returns the new balance. A
// retry with the same reference pays once. A customer account is refused
// (ErrNotMerchant): a payout carries no signature of the account's holder,
// and a customer's balance leaves only by the holder's own (a withdrawal,
// a check), which the auditor checks as it checks this rule.
func (b *Bank) Payout(ctx context.Context, account uint64, amount ecash.Amount, memo, reference string) (ecash.Amount, error) {
	if err := b.checkCredit(amount, memo, reference, "payout"); err != nil {
		return ecash.Amount{}, err
	}
	// An account's kind never changes, so the check holds at the commit.
	if acct, err := b.store.Account(ctx, account); err != nil {
		return ecash.Amount{}, err
	} else if !acct.Merchant && !IsSystem(account) {
		return ecash.Amount{}, fmt.Errorf("%w: account %d is a customer's; a payout settles a merchant", ErrNotMerchant, account)
	}
	bal, err := b.store.Credit(ctx, CreditOp{
		Account: account, Amount: int64(amount.Value), Payout: true, Memo: memo, Reference: reference, Time: b.now(),
		Log: auditlog.Payout{Account: account, Amount: amount, Reference: auditlog.OptionalHash(reference)},
	})
	if err != nil {
		return ecash.Amount{}, err
	}
	b.log.Info("payout", "account", account, "amount", amount.String(), "reference", reference)
	return b.Money(bal), nil
}

// PayoutResult is what PayoutSettlement did.
type PayoutResult struct {
	Balance ecash.Amount // the account's balance after the payout
	// Statement is the signed statement of the period; nil if it could not
	// be made once the payout had committed, for the reason in NoStatement.
	Statement   *echeck.Statement
	NoStatement error
}

// PayoutSettlement pays amount out of an account (as Payout) and makes the
// signed statement of [from, to) for the merchant; a zero to means up to
// now, the payout included. Whatever could refuse the statement (the
// period, the account, more postings than a statement holds, the payout's
// own included, the scan limit) refuses the payout before it commits: an
// error is then a refusal with nothing recorded. Once the payout has
// committed it stands, even if the statement still cannot be made (postings
// arrived meanwhile, the store failed): the result then has no statement,
// and a retry with the same reference, which pays nothing more, makes it.
// Such a retry is never refused for its statement: it reports it missing.
func (b *Bank) PayoutSettlement(ctx context.Context, account uint64, amount ecash.Amount, memo, reference string, from, to time.Time) (PayoutResult, error) {
	end := func() time.Time {
		if to.IsZero() {
			return b.now().Add(time.Millisecond) // the payout's instant included
		}
		return to
	}
	if to.IsZero() && b.now().Before(from) {
		return PayoutResult{}, fmt.Errorf("%w: the statement period starts at %s, after the bank's clock (%s)", ecash.ErrMalformed, from.UTC(), b.now().UTC())
	}
	// A retry of a payout already made (its answer lost) pays nothing and
	// must not be refused: the statement checks below see its posting and
	// could refuse a period that held it only just.
	paid, err := b.paidOut(ctx, account, amount, reference)
	if err != nil {
		return PayoutResult{}, err
	}
	if !paid {
		st, err := b.Settlement(ctx, account, from, end())
		if err != nil {
			return PayoutResult{}, err
		}
		if now := b.now(); !now.Before(from) && now.Before(end()) && len(st.Lines) >= echeck.MaxStatementLines {
			return PayoutResult{}, errTooManyLines
		}
	}
	bal, err := b.Payout(ctx, account, amount, memo, reference)
	if err != nil {
		return PayoutResult{}, err
	}
	res := PayoutResult{Balance: bal}
	if res.Statement, res.NoStatement = b.Settlement(ctx, account, from, end()); res.NoStatement != nil {
		b.log.Warn("payout recorded without its statement", "account", account, "reference", reference, "err", res.NoStatement)
	}
	return res, nil
}

// paidOut reports whether the account's recent postings hold a payout of
// amount under reference: a retry. It reads as far back as a statement
// does; a retry comes soon after the payout it repeats.
func (b *Bank) paidOut(ctx context.Context, account uint64, amount ecash.Amount, reference string) (bool, error) {
	if reference == "" {
		return false, nil
	}
	hist, err := b.store.History(ctx, account, maxStatementScan)
	if err != nil {
		return false, err
	}
	for _, p := range hist {
		if p.Kind == KindPayout && p.Ref == reference && p.Amount == -int64(amount.Value) {
			return true, nil
		}
	}
	return false, nil
}

// errTooManyLines refuses a statement that would not decode: a period with
// more postings than a statement holds.
var errTooManyLines = fmt.Errorf("%w: more than %d postings in the period; ask for a shorter one", ecash.ErrMalformed, echeck.MaxStatementLines)

// Settlement returns the bank's signed statement of an account over
// [from, to): what a merchant checks its receipts against.
func (b *Bank) Settlement(ctx context.Context, account uint64, from, to time.Time) (*echeck.Statement, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: period from %s to %s", ecash.ErrMalformed, from, to)
	}
	a, err := b.store.Account(ctx, account)
	if err != nil {
		return nil, err
	}
	return b.statement(ctx, a, from, to)
}
