package merchant

import (
	"context"
	"encoding/binary"
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
	Deposits  int          // receipts found on the statement
	Deposited ecash.Amount // their total
	PaidOut   ecash.Amount // payouts on the statement
	Unmatched []string     // deposit lines for payments this merchant holds no receipt for
	// Late are the orders deposited (by their receipts) within postingLag
	// of the period's end whose deposits the bank posted after it: due on
	// a later statement.
	Late []string
	// Unsettled are the orders deposited outside this period but within
	// the span of the periods this merchant has checked (earliest start to
	// latest end) that no statement it checked holds: a period not checked
	// yet, or a deposit a bank left off every statement (say, between two
	// whose periods leave a gap), whatever the order they were checked in.
	Unsettled []string
}

// Coverage: settledKey marks a payment (by its hash) a checked statement
// held, whether or not this merchant had its receipt then; the span of
// the periods checked runs from the earliest start to the latest end
// (Unix milliseconds). Within it, every receipt is expected on some
// checked statement.
var keySettleSpan = []byte("m/settle-span")

func settledKey(payment string) []byte { return append([]byte("sp/"), payment...) } // the hash in hex, as statements name it

// postingLag bounds how much later than its receipt's time the bank can
// post a deposit: a posting follows the account's commit order, so one
// that waited in the commit queue behind a later-stamped one takes that
// one's time (bank.Account.PostingTime; PROTOCOL §9.15): milliseconds,
// up to a stalled disk's sync. A deposit this close to a period's end may
// sit in the next period's statement; one further off and missing is an
// error, as before.
const postingLag = 10 * time.Second

// VerifySettlement checks the bank's signed statement of the merchant's
// account (what "bankd admin payout --statement" writes): signed by the
// bank, for this account, and every deposit receipt this merchant holds
// for the period appears on it as a deposit of exactly its total (the
// statement names each deposit by its payment hash). Deposit lines the
// merchant has no receipt for are reported, not refused: another
// installation may share the account. A deposit made just before the
// period's end may be posted just after it (Late). The merchant remembers
// which payments checked statements held (by hash, receipt or not), and
// reports those in the span of the periods checked that none did
// (Unsettled), so that a deposit cannot fall between statements unseen.
func (m *Merchant) VerifySettlement(ctx context.Context, raw []byte) (*SettlementReport, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
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
	from, to := st.From, st.To // the span of the periods checked, this one included
	before := st.To            // the span's end before this check
	if v, closer, err := m.db.Get(keySettleSpan); err == nil {
		if len(v) == 16 {
			f, t := time.UnixMilli(int64(binary.BigEndian.Uint64(v))), time.UnixMilli(int64(binary.BigEndian.Uint64(v[8:])))
			from, before = minTime(from, f), t
			to = maxTime(to, t)
		}
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	// Every payment this statement holds is settled, receipt here or not.
	settled := m.db.NewBatch()
	defer settled.Close()
	for k := range lines {
		if err := settled.Set(settledKey(k), nil, nil); err != nil {
			return nil, err
		}
	}
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
		key := r.PaymentHash.String()
		if got, on := lines[key]; on {
			if got != int64(r.Total.Value) {
				return nil, fmt.Errorf("%w: order %s was deposited for %s, the statement says %d", ErrSettlement, o.ID, r.Total, got)
			}
			delete(lines, key)
			rep.Deposits++
			if rep.Deposited, err = rep.Deposited.Add(r.Total); err != nil {
				return nil, err
			}
			continue
		}
		switch t := r.DepositedAt; {
		case t.Before(from) || !t.Before(to):
			// Outside every period checked.
		case !t.Before(st.From) && t.Before(st.To.Add(-postingLag)):
			return nil, fmt.Errorf("%w: the deposit of order %s (%s) is missing", ErrSettlement, o.ID, r.Total)
		default:
			done, err := m.has(settledKey(key))
			switch {
			case err != nil:
				return nil, err
			case done:
				// Held by another statement checked.
			case !t.Before(st.From) && t.Before(st.To) && !before.After(st.To):
				rep.Late = append(rep.Late, o.ID) // due on the next statement
			case t.Before(to.Add(-postingLag)):
				// Outside this period (or late for it, with a later period
				// already checked), inside the span, on no statement checked.
				rep.Unsettled = append(rep.Unsettled, o.ID)
			}
			// Otherwise due on a statement not checked yet.
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	span := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(from.UnixMilli())), uint64(to.UnixMilli()))
	if err := settled.Set(keySettleSpan, span, nil); err != nil {
		return nil, err
	}
	if err := settled.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	for k := range lines {
		rep.Unmatched = append(rep.Unmatched, k)
	}
	return rep, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
