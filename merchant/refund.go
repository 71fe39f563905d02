package merchant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// ErrNotPaid: a refund of an order that was never paid.
var ErrNotPaid = errors.New("merchant: the order is not paid")

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

// Refund gives amount of a paid order back to the customer's coins: it
// signs a refund request, persists it, and has the bank apply it (the
// bank refuses once the money was paid out). It first re-sends any refund
// of the order left pending by a crash. It returns the bank's verified
// receipt and the order's refunds in all.
func (m *Merchant) Refund(ctx context.Context, orderID string, amount ecash.Amount) (*ecash.RefundReceipt, ecash.Amount, error) {
	total := ecash.Amount{Currency: m.currency}
	// Before anything is saved: a request the bank cannot take would stay
	// pending and be sent first by every later refund of the order.
	if amount.Currency != m.currency {
		return nil, total, fmt.Errorf("%w: a refund in %s of an order in %s", ecash.ErrCurrencyMismatch, amount.Currency, m.currency)
	}
	if amount.IsZero() || amount.Validate() != nil {
		return nil, total, fmt.Errorf("%w: refund of %s", ecash.ErrBadAmount, amount)
	}
	m.saleMu.Lock()
	defer m.saleMu.Unlock()
	o, err := m.CheckOrder(ctx, orderID)
	if err != nil {
		return nil, total, err
	}
	if o.Receipt == nil {
		return nil, total, fmt.Errorf("%w: %s", ErrNotPaid, orderID)
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		return nil, total, err
	}
	recs, err := m.refunds(orderID)
	if err != nil {
		return nil, total, err
	}
	next := uint64(1)
	for _, r := range recs {
		next = r.ID + 1
		if r.Receipt == nil {
			if _, err := m.sendRefund(ctx, orderID, r); err != nil {
				return nil, total, fmt.Errorf("merchant: re-sending a pending refund: %w", err)
			}
		}
		rc, err := ecash.DecodeRefundReceipt(r.Receipt)
		if err != nil {
			return nil, total, err
		}
		if total, err = total.Add(rc.Total); err != nil {
			return nil, total, err
		}
	}
	req := &ecash.RefundRequest{
		PaymentHash: pr.Hash(), MerchantAccount: m.account, RefundID: next,
		Amount: amount, CreatedAt: m.now(),
	}
	req.Sign(m.key)
	rec := &refundRecord{ID: req.RefundID, Request: req.Encode()}
	if err := m.db.Set(refundKey(orderID, rec.ID), rec.encode(), pebble.Sync); err != nil {
		return nil, total, err
	}
	rc, err := m.sendRefund(ctx, orderID, rec)
	if err != nil {
		return nil, total, err
	}
	total, err = total.Add(rc.Total)
	m.log.Info("order refunded", "order", orderID, "amount", amount.String(), "refunded", total.String())
	return rc, total, err
}

// sendRefund sends a persisted refund request and stores the bank's
// verified receipt in rec. A definitive refusal deletes the request, so
// that the order's next refund does not send it again.
func (m *Merchant) sendRefund(ctx context.Context, orderID string, rec *refundRecord) (*ecash.RefundReceipt, error) {
	req, err := ecash.DecodeRefundRequest(rec.Request)
	if err != nil {
		return nil, err
	}
	m.tr.Record(m.now(), "refund-request", rec.Request, orderID)
	resp, err := m.bank.Refund(ctx, &pb.RefundRequest{Request: rec.Request})
	if err != nil {
		if bank.Definitive(err) {
			if derr := m.db.Delete(refundKey(orderID, rec.ID), pebble.Sync); derr != nil {
				return nil, errors.Join(err, derr)
			}
		}
		return nil, err
	}
	// The bank has applied the refund: a receipt that does not verify is
	// no refusal, and the request stays pending.
	rc, err := ecash.DecodeRefundReceipt(resp.Receipt)
	if err == nil {
		err = m.verifyBank(ctx, func(ks *ecash.KeySet) error { return rc.Verify(ks, req) })
	}
	if err != nil {
		m.log.Error("bank refund receipt does not verify", "order", orderID, "err", err)
		return nil, fmt.Errorf("%w: refund receipt: %v", ErrBadBankAnswer, err)
	}
	rec.Receipt = resp.Receipt
	if err := m.db.Set(refundKey(orderID, rec.ID), rec.encode(), pebble.Sync); err != nil {
		return nil, err
	}
	m.tr.Record(m.now(), "refund-receipt", resp.Receipt, orderID)
	return rc, nil
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
	var out, unsendable []*refundRecord
	for it.First(); it.Valid(); it.Next() {
		r, err := decodeRefundRecord(it.Value())
		if err != nil || len(it.Key()) != len(prefix)+8 {
			it.Close()
			return nil, fmt.Errorf("merchant: corrupt refund record %q: %v", it.Key(), err)
		}
		r.ID = binary.BigEndian.Uint64(it.Key()[len(prefix):])
		if _, err := ecash.DecodeRefundRequest(r.Request); r.Receipt == nil && err != nil {
			m.log.Warn("dropping a pending refund that can never be sent", "order", orderID, "refund", r.ID, "err", err)
			unsendable = append(unsendable, r)
			continue
		}
		out = append(out, r)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	for _, r := range unsendable {
		if err := m.db.Delete(refundKey(orderID, r.ID), pebble.Sync); err != nil {
			return nil, err
		}
	}
	return out, nil
}
