package merchant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Errors of refunds.
var (
	// ErrNotPaid: a refund of an order that was never paid.
	ErrNotPaid = errors.New("merchant: the order is not paid")
	// ErrPendingRefund: a refund of the order left pending by a lost
	// answer was completed instead of the one asked (Refund).
	ErrPendingRefund = errors.New("merchant: a pending refund of the order was completed first")
	// ErrRefundID: a refund id that is neither one of the order's refunds,
	// of the amount asked, nor the next.
	ErrRefundID = errors.New("merchant: no such refund of the order")
	// ErrClockAhead: the bank refused a refund as dated more than
	// ecash.MaxClockSkew ahead of its clock (it says by how much). A new
	// refund refused so is dropped: nothing was debited. One pending from
	// before stays pending, as any pending refund the bank refuses
	// (ErrRefundInFlight, which it wraps then): the bank may have taken it
	// at a replica whose clock is further on; the order's next refund
	// sends it again, and the bank answers it, or takes it, once its
	// clock reaches the date.
	ErrClockAhead = errors.New("merchant: this computer's clock is ahead of the bank's; set it right (turn on network time)")
	// ErrClockBehind: the bank refused a new refund as dated more than
	// bank.RefundWindow and the skew before its clock (it says by how
	// much), or its store at the commit as past the deadline that date
	// sets: this computer's clock is that far behind. Nothing was
	// debited, and the refund is dropped.
	ErrClockBehind = errors.New("merchant: this computer's clock is behind the bank's; set it right (turn on network time)")
	// ErrRefundInFlight: the bank refused a pending refund (one sent
	// before, its answer lost), or it is past its send window, and an
	// earlier send of it may still be committing; it stays pending
	// until none can be (pendingRefund).
	ErrRefundInFlight = errors.New("merchant: a pending refund may still be committing at the bank from an earlier send; it stays pending")
	// ErrRefundDropped: a pending refund the bank has no record of, and
	// can no longer take, was dropped; nothing was refunded by it.
	ErrRefundDropped = errors.New("merchant: a pending refund the bank never made was dropped; nothing was refunded by it")
)

// A pending refund, one sent before whose answer was lost, is never
// settled by a refusal: the bank refused after it looked the request up
// once and found none, while an earlier send may still be committing (at a
// replica, or in its commit pipeline) and can, whatever the refusal said (a
// clock behind its date, a coin's deposit window closed meanwhile), debit
// the merchant after. Dropped then, the refund would be lost to the records
// and its number made again for another request. The rule:
//   - a pending refund is sent again only until refundSendWindow after its
//     date (by the merchant's clock), so every send of it is bounded; the
//     bank takes a refund only until bank.RefundWindow and the skew after
//     its date, and its store commits one only until then;
//   - a refusal of it keeps it pending;
//   - past its send window it is not sent: the bank's RefundReceipts of
//     the payment are asked for its receipt, which completes it; without
//     one, once refundCommitBound and twice the clock skew (the merchant's
//     clock set right meanwhile) have passed since the window closed, no
//     send can still commit, and it is dropped (ErrRefundDropped). The
//     bank's store bounds the commit itself (bank.ErrTooLate); the hour
//     more is for banks before 2026-11-28, which took a refund dated long
//     past and bounded no commit.
//
// A refund refused on its first send is dropped at once: nothing was sent
// before it.
const (
	refundSendWindow  = bank.RefundWindow
	refundCommitBound = time.Hour
)

// refundSendEnd is when a pending refund is sent for the last time, and
// refundDropAt when it is dropped if the bank has no record of it.
func refundSendEnd(r *refundRecord) time.Time { return r.req.CreatedAt.Add(refundSendWindow) }
func refundDropAt(r *refundRecord) time.Time {
	return refundSendEnd(r).Add(refundCommitBound + 2*ecash.MaxClockSkew)
}

// Refunds are stored under f/<order id> 0x00 <u64 refund id>: the signed
// request, persisted before it is sent, and the bank's receipt once it
// answers. A crash in between leaves a pending refund that the next Refund
// of the order sends again, byte for byte, so the bank applies it once.
func refundKey(orderID string, id uint64) []byte {
	k := append([]byte("f/"), orderID...)
	return binary.BigEndian.AppendUint64(append(k, 0), id)
}

type refundRecord struct {
	ID      uint64 // the refund's number among the order's, from 1 (in the key)
	Request []byte // "signed-refund-request"
	Receipt []byte // "signed-refund-receipt"; nil while pending
	req     *ecash.RefundRequest
}

func (r *refundRecord) encode() []byte {
	e := ecash.NewEncoder("merchant/refund")
	e.VarBytes(r.Request)
	e.VarBytes(r.Receipt)
	return e.Bytes()
}

func decodeRefundRecord(b []byte) (*refundRecord, error) {
	d := ecash.NewDecoder("merchant/refund", b)
	r := &refundRecord{Request: d.VarBytes(ecash.MaxFieldLen), Receipt: d.VarBytes(ecash.MaxFieldLen)}
	if len(r.Receipt) == 0 {
		r.Receipt = nil
	}
	return r, d.Finish()
}

// Refunded is a refund of an order that the bank applied.
type Refunded struct {
	ID      uint64               // its number among the order's refunds, from 1
	Receipt *ecash.RefundReceipt // the bank's, verified
	Total   ecash.Amount         // the order's refunds in all, this one included
}

// Refund gives amount of a paid order back to the customer's coins: it
// signs a refund request, persists it, and has the bank apply it (the
// bank refuses once the money was paid out).
//
// Asking again is safe. A refund whose answer was lost stays pending, and
// is completed (sent again, byte for byte: the bank applies it once)
// before the order's next refund; with id 0, that next Refund returns it
// if it is of amount (the retry it then is), and ErrPendingRefund
// otherwise, to be asked again for a further refund. A non-zero id means
// "refund number id of the order": an existing one of amount is returned
// (completed first if pending), one past the order's refunds makes it,
// anything else is ErrRefundID. A pending refund the bank refuses stays
// pending while an earlier send of it may still commit
// (ErrRefundInFlight), and is dropped only once none can and the bank has
// no receipt of it (ErrRefundDropped; refundSendWindow).
func (m *Merchant) Refund(ctx context.Context, orderID string, id uint64, amount ecash.Amount) (*Refunded, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	// Before anything is saved: a request the bank cannot take would stay
	// pending and be sent first by every later refund of the order.
	if amount.Currency != m.currency {
		return nil, fmt.Errorf("%w: a refund in %s of an order in %s", ecash.ErrCurrencyMismatch, amount.Currency, m.currency)
	}
	if amount.IsZero() || amount.Validate() != nil {
		return nil, fmt.Errorf("%w: refund of %s", ecash.ErrBadAmount, amount)
	}
	m.refundMu.Lock()
	defer m.refundMu.Unlock()
	o, err := m.checkOrder(ctx, orderID)
	if err != nil {
		return nil, err
	}
	if o.Receipt == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotPaid, orderID)
	}
	recs, err := m.refunds(orderID)
	if err != nil {
		return nil, err
	}
	next := uint64(1)
	if len(recs) > 0 {
		next = recs[len(recs)-1].ID + 1
	}
	var rec *refundRecord // the refund to return
	switch {
	case id != 0 && id < next:
		i := slices.IndexFunc(recs, func(r *refundRecord) bool { return r.ID == id })
		if i < 0 || recs[i].req.Amount != amount {
			return nil, fmt.Errorf("%w: order %s has no refund %d of %s", ErrRefundID, orderID, id, amount)
		}
		if rec = recs[i]; rec.Receipt == nil {
			if err := m.sendRefund(ctx, orderID, rec, true); err != nil {
				return nil, err
			}
		}
	case id != 0 && id != next:
		return nil, fmt.Errorf("%w: order %s: refund %d is neither one made (refunds made: %d) nor the next (%d)", ErrRefundID, orderID, id, next-1, next)
	default:
		for _, r := range recs {
			if r.Receipt != nil {
				continue
			}
			if err := m.sendRefund(ctx, orderID, r, true); err != nil {
				return nil, fmt.Errorf("merchant: completing pending refund %d of order %s (%s): %w", r.ID, orderID, r.req.Amount, err)
			}
			if id == 0 && r.req.Amount == amount {
				rec = r // a retry of the refund whose answer was lost
			} else if id == 0 {
				return nil, fmt.Errorf("%w: refund %d of %s, pending since its answer was lost, was completed instead of this one of %s; ask again for a further refund",
					ErrPendingRefund, r.ID, r.req.Amount, amount)
			}
		}
		if rec == nil {
			if rec, err = m.newRefund(ctx, o, next, amount); err != nil {
				return nil, err
			}
			recs = append(recs, rec)
		}
	}
	out := &Refunded{ID: rec.ID, Total: ecash.Amount{Currency: m.currency}}
	for _, r := range recs {
		if r.Receipt == nil {
			continue
		}
		rc, err := ecash.DecodeRefundReceipt(r.Receipt)
		if err != nil {
			return nil, fmt.Errorf("merchant: corrupt refund record: %w", err)
		}
		if out.Total, err = out.Total.Add(rc.Total); err != nil {
			return nil, err
		}
		if r == rec {
			out.Receipt = rc
		}
	}
	return out, nil
}

// newRefund makes, persists and sends refund number id of order o.
func (m *Merchant) newRefund(ctx context.Context, o *Order, id uint64, amount ecash.Amount) (*refundRecord, error) {
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		return nil, err
	}
	req := &ecash.RefundRequest{PaymentHash: pr.Hash(), MerchantAccount: m.account, RefundID: id, Amount: amount, CreatedAt: m.now()}
	req.Sign(m.key)
	rec := &refundRecord{ID: id, Request: req.Encode(), req: req}
	if err := m.db.Set(refundKey(o.ID, id), rec.encode(), pebble.Sync); err != nil {
		return nil, err
	}
	if err := m.sendRefund(ctx, o.ID, rec, false); err != nil {
		return nil, err
	}
	m.log.Debug("order refunded", "order", o.ID, "refund", id, "amount", amount.String())
	return rec, nil
}

// sendRefund sends a persisted refund request and stores the bank's
// verified receipt in rec. A definitive refusal of a new refund deletes
// the request, so that the order's next refund does not send it again; a
// pending one (possibly sent before) is settled by the rule above
// (pendingRefund).
func (m *Merchant) sendRefund(ctx context.Context, orderID string, rec *refundRecord, pending bool) error {
	if pending && m.now().After(refundSendEnd(rec)) {
		return m.pendingRefund(ctx, orderID, rec, nil)
	}
	m.tr.Record(m.now(), "refund-request", rec.Request, orderID)
	resp, err := m.bank.Refund(ctx, &pb.RefundRequest{Request: rec.Request})
	if err != nil {
		if pending && bank.Definitive(err) {
			return m.pendingRefund(ctx, orderID, rec, err)
		}
		if bank.Definitive(err) {
			if derr := m.db.Delete(refundKey(orderID, rec.ID), pebble.Sync); derr != nil {
				return errors.Join(err, derr)
			}
		}
		if bank.BadTimestamp(err) {
			return fmt.Errorf("%w: the refund was not made: %s", ErrClockAhead, status.Convert(err).Message())
		}
		if bank.TooOld(err) || bank.TooLate(err) {
			return fmt.Errorf("%w: the refund was not made: %s", ErrClockBehind, status.Convert(err).Message())
		}
		return err
	}
	return m.refundDone(ctx, orderID, rec, resp.Receipt)
}

// pendingRefund settles pending refund rec that the bank refused
// (refusal) or that is past its send window (refusal nil, and it was not
// sent): completed with the receipt the bank's RefundReceipts hold for it
// (past the window); kept pending (ErrRefundInFlight) while a send of it
// may still commit; dropped once none can, the bank holding no receipt.
func (m *Merchant) pendingRefund(ctx context.Context, orderID string, rec *refundRecord, refusal error) error {
	if refusal == nil {
		// (A refusal was answered after the bank looked the record up.)
		if done, err := m.refundFromReceipts(ctx, orderID, rec); done || err != nil {
			return err
		}
	}
	said := ""
	if refusal != nil {
		said = " (the bank said: " + status.Convert(refusal).Message() + ")"
	}
	// A refusal keeps it, whatever the clock says: it is dropped only
	// after the bank's receipts were asked (refusal nil), not on a clock
	// that jumped past the drop time during this send.
	if refusal != nil || !m.now().After(refundDropAt(rec)) {
		err := fmt.Errorf("%w: refund %d of order %s%s, until %s at the latest; the order's next refund %s", ErrRefundInFlight, rec.ID, orderID, said,
			refundDropAt(rec).UTC().Format(time.RFC3339), m.nextStep(rec))
		if bank.BadTimestamp(refusal) {
			// The refusal holds only until the bank's clock reaches the
			// refund's date: say what to set right.
			err = fmt.Errorf("%w: %w", ErrClockAhead, err)
		}
		return err
	}
	// No send of it can commit any more, and the bank has no receipt.
	if err := m.db.Delete(refundKey(orderID, rec.ID), pebble.Sync); err != nil {
		return err
	}
	m.log.Warn("pending refund dropped: the bank has no record of it and can no longer take it", "order", orderID, "refund", rec.ID)
	return fmt.Errorf("%w: refund %d of order %s (%s); ask again to refund", ErrRefundDropped, rec.ID, orderID, rec.req.Amount)
}

// refundFromReceipts completes pending refund rec with its receipt among
// the bank's refund receipts of the payment, if there is one (done).
func (m *Merchant) refundFromReceipts(ctx context.Context, orderID string, rec *refundRecord) (done bool, err error) {
	resp, err := m.bank.RefundReceipts(ctx, &pb.RefundReceiptsRequest{PaymentHash: rec.req.PaymentHash[:]})
	if err != nil {
		return false, err
	}
	h := rec.req.Hash()
	for _, raw := range resp.Receipts {
		rc, err := ecash.DecodeRefundReceipt(raw)
		if err != nil {
			// Not skipped: it could be this refund's, and dropping a
			// refund the bank made loses it.
			return false, fmt.Errorf("%w: refund receipts of order %s: %v", ErrBadBankAnswer, orderID, err)
		}
		if rc.RefundHash == h {
			return true, m.refundDone(ctx, orderID, rec, raw)
		}
	}
	return false, nil
}

// nextStep says what the order's next refund does with pending rec.
func (m *Merchant) nextStep(rec *refundRecord) string {
	if m.now().After(refundSendEnd(rec)) {
		return "asks the bank for its receipt"
	}
	return "sends it again"
}

// refundDone verifies the bank's receipt raw for rec and records it.
func (m *Merchant) refundDone(ctx context.Context, orderID string, rec *refundRecord, raw []byte) error {
	// The bank has applied the refund: a receipt that does not verify is
	// no refusal, and the request stays pending.
	rc, err := ecash.DecodeRefundReceipt(raw)
	if err == nil {
		err = m.verifyBank(ctx, func(ks *ecash.KeySet) error { return rc.Verify(ks, rec.req) })
	}
	if err != nil {
		m.log.Error("bank refund receipt does not verify", "order", orderID, "err", err)
		return fmt.Errorf("%w: refund receipt: %v", ErrBadBankAnswer, err)
	}
	rec.Receipt = raw
	if err := m.db.Set(refundKey(orderID, rec.ID), rec.encode(), pebble.Sync); err != nil {
		return err
	}
	m.tr.Record(m.now(), "refund-receipt", raw, orderID)
	return nil
}

// refunds returns the order's refunds, by refund id from 1. It deletes a
// pending request that does not decode (a zero refund an older version
// saved): the bank would refuse it as well, and kept, it would be sent
// first by every later refund of the order and fail each.
func (m *Merchant) refunds(orderID string) ([]*refundRecord, error) {
	prefix := append(append([]byte("f/"), orderID...), 0)
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix[:len(prefix)-1]), 1)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*refundRecord
	for it.First(); it.Valid(); it.Next() {
		r, err := decodeRefundRecord(it.Value())
		if err != nil || len(it.Key()) != len(prefix)+8 {
			return nil, fmt.Errorf("merchant: corrupt refund record %q: %v", it.Key(), err)
		}
		r.ID = binary.BigEndian.Uint64(it.Key()[len(prefix):])
		if r.req, err = ecash.DecodeRefundRequest(r.Request); err != nil {
			if r.Receipt != nil {
				return nil, fmt.Errorf("merchant: corrupt refund record %q: %v", it.Key(), err)
			}
			m.log.Warn("dropping a pending refund that can never be sent", "order", orderID, "refund", r.ID, "err", err)
			if err := m.db.Delete(refundKey(orderID, r.ID), pebble.Sync); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, r)
	}
	return out, it.Error()
}
