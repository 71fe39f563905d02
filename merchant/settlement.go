package merchant

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// ErrSettlement: the bank's settlement statement does not match the
// merchant's own receipts.
var ErrSettlement = errors.New("merchant: settlement statement does not match the receipts")

// SettlementReport is what VerifySettlement checked.
type SettlementReport struct {
	Statement *echeck.Statement
	Deposits  int          // receipts of the period found on the statement
	Deposited ecash.Amount // their total
	PaidOut   ecash.Amount // payouts on the statement
	Unmatched []string     // deposit lines for payments this merchant holds no receipt for
	// Late are the orders deposited (by their receipts) within postingLag
	// of the period's end whose deposits the bank posted after it: on the
	// next statement.
	Late []string
}

// lateKey marks an order whose deposit a statement reported late: the
// next statement that covers its time must hold it.
func lateKey(orderID string) []byte { return append([]byte("lt/"), orderID...) }

// lateOrders reads the orders marked late (few: each waits for one
// statement).
func (m *Merchant) lateOrders() (map[string]bool, error) {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("lt/"), UpperBound: []byte("lt0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]bool{}
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key()[len("lt/"):])] = true
	}
	return out, it.Error()
}

// postingLag bounds how much later than its receipt's time the bank can
// post a deposit: a posting follows the account's commit order, so one
// that waited in the commit queue behind a later-stamped one takes that
// one's time (bank.Account.PostingTime; PROTOCOL §9.15): milliseconds,
// up to a stalled disk's sync. A deposit this close to a period's
// boundary may sit in the neighbouring period's statement; one further
// off and missing is an error, as before.
const postingLag = 10 * time.Second

// VerifySettlement checks the bank's signed statement of the merchant's
// account (what "bankd admin payout --statement" writes): signed by the
// bank, for this account, and every deposit receipt this merchant holds
// for the period appears on it as a deposit of exactly its total (the
// statement names each deposit by its payment hash). Deposit lines the
// merchant has no receipt for are reported, not refused: another
// installation may share the account. A deposit made just before the
// period's end may be posted just after it (Late), and one made just
// before its start inside it.
func (m *Merchant) VerifySettlement(ctx context.Context, raw []byte) (*SettlementReport, error) {
	st, err := echeck.DecodeStatement(raw)
	if err != nil {
		return nil, err
	}
	err = m.verifyBank(ctx, func(ks *ecash.KeySet) error {
		if err := ks.CheckSigner(st.SignerPub, st.To); err != nil {
			return fmt.Errorf("%w: %w", ErrSettlement, err)
		}
		return st.Verify(st.SignerPub)
	})
	if err != nil {
		return nil, err
	}
	if st.Account != m.account || st.Currency != m.currency {
		return nil, fmt.Errorf("%w: a statement of account %d in %s, this merchant is %d in %s", ErrSettlement, st.Account, st.Currency, m.account, m.currency)
	}
	rep := &SettlementReport{Statement: st, Deposited: ecash.Amount{Currency: st.Currency}, PaidOut: ecash.Amount{Currency: st.Currency}}
	lines := map[string]int64{} // payment hash (hex) → amount credited
	for _, l := range st.Lines {
		switch {
		case l.ProductID == "deposit" && strings.HasPrefix(l.Memo, "payment "):
			lines[strings.TrimPrefix(l.Memo, "payment ")] += l.Amount
		case l.ProductID == "payout" && l.Amount < 0:
			if rep.PaidOut, err = rep.PaidOut.Add(ecash.Amount{Currency: st.Currency, Value: uint64(-l.Amount)}); err != nil {
				return nil, err
			}
		}
	}
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("o/"), UpperBound: []byte("o0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	wasLate, err := m.lateOrders()
	if err != nil {
		return nil, err
	}
	late := m.db.NewBatch() // the late marks this statement sets and clears
	defer late.Close()
	for it.First(); it.Valid(); it.Next() {
		o, err := decodeOrder(it.Value())
		if err != nil {
			return nil, err
		}
		if o.Receipt == nil {
			continue
		}
		r, err := ecash.DecodeDepositReceipt(o.Receipt)
		if err != nil {
			return nil, err
		}
		if !r.DepositedAt.Before(st.To) {
			continue
		}
		key := r.PaymentHash.String()
		got, on := lines[key]
		switch {
		case !on && r.DepositedAt.Before(st.From) && !wasLate[o.ID]:
			continue // an earlier period's
		case !on && r.DepositedAt.Before(st.From):
			// Marked late by an earlier statement, so due on a later one:
			// a bank cannot drop it by starting this one after it.
			return nil, fmt.Errorf("%w: the deposit of order %s (%s, %s) was posted after the end of an earlier statement, and is missing from this later one", ErrSettlement, o.ID, r.Total, r.DepositedAt.UTC().Format(time.RFC3339Nano))
		case !on && !r.DepositedAt.Before(st.To.Add(-postingLag)):
			rep.Late = append(rep.Late, o.ID)
			if err := late.Set(lateKey(o.ID), nil, nil); err != nil {
				return nil, err
			}
			continue
		case !on:
			return nil, fmt.Errorf("%w: the deposit of order %s (%s) is missing", ErrSettlement, o.ID, r.Total)
		}
		if got != int64(r.Total.Value) {
			return nil, fmt.Errorf("%w: order %s was deposited for %s, the statement says %d", ErrSettlement, o.ID, r.Total, got)
		}
		if wasLate[o.ID] {
			if err := late.Delete(lateKey(o.ID), nil); err != nil {
				return nil, err
			}
		}
		delete(lines, key)
		rep.Deposits++
		if rep.Deposited, err = rep.Deposited.Add(r.Total); err != nil {
			return nil, err
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if err := late.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	for k := range lines {
		rep.Unmatched = append(rep.Unmatched, k)
	}
	return rep, nil
}
