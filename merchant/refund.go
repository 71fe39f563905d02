package merchant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

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
	// before stays pending: the bank may have taken it at a replica whose
	// clock is further on; the order's next refund sends it again, and the
	// bank answers it, or takes it, once its clock reaches the date.
	ErrClockAhead = errors.New("merchant: this computer's clock is ahead of the bank's; set it right (turn on network time)")
)

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
// anything else is ErrRefundID.
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
	m.log.Info("order refunded", "order", o.ID, "refund", id, "amount", amount.String())
	return rec, nil
}

// sendRefund sends a persisted refund request and stores the bank's
// verified receipt in rec. A definitive refusal deletes the request, so
// that the order's next refund does not send it again; but a request that
// may have been sent before (pending), refused as dated ahead of the
// bank's clock, is kept (ErrClockAhead).
func (m *Merchant) sendRefund(ctx context.Context, orderID string, rec *refundRecord, pending bool) error {
	m.tr.Record(m.now(), "refund-request", rec.Request, orderID)
	resp, err := m.bank.Refund(ctx, &pb.RefundRequest{Request: rec.Request})
	if err != nil {
		ahead := bank.BadTimestamp(err)
		// The bank refuses so after looking the request's record up and
		// finding none, but a replica whose clock is further on may be
		// committing it still: dropped, a refund the bank made would be
		// lost, and its number made again for another request. The
		// refusal holds only until the bank's clock reaches the date.
		if ahead && pending {
			return fmt.Errorf("%w: refund %d of order %s stays pending, to be sent again by the order's next refund: %s", ErrClockAhead, rec.ID, orderID, status.Convert(err).Message())
		}
		if bank.Definitive(err) {
			if derr := m.db.Delete(refundKey(orderID, rec.ID), pebble.Sync); derr != nil {
				return errors.Join(err, derr)
			}
		}
		if ahead {
			return fmt.Errorf("%w: the refund was not made: %s", ErrClockAhead, status.Convert(err).Message())
		}
		return err
	}
	// The bank has applied the refund: a receipt that does not verify is
	// no refusal, and the request stays pending.
	rc, err := ecash.DecodeRefundReceipt(resp.Receipt)
	if err == nil {
		err = m.verifyBank(ctx, func(ks *ecash.KeySet) error { return rc.Verify(ks, rec.req) })
	}
	if err != nil {
		m.log.Error("bank refund receipt does not verify", "order", orderID, "err", err)
		return fmt.Errorf("%w: refund receipt: %v", ErrBadBankAnswer, err)
	}
	rec.Receipt = resp.Receipt
	if err := m.db.Set(refundKey(orderID, rec.ID), rec.encode(), pebble.Sync); err != nil {
		return err
	}
	m.tr.Record(m.now(), "refund-receipt", resp.Receipt, orderID)
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
