package merchant

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Deposits in flight. Pay marks an order d/<order id> (empty value) before
// it sends a deposit, and the synced batch that records the order paid
// deletes the mark. A mark left over is a deposit whose outcome the
// merchant did not learn: an answer lost, the process dead before it
// recorded the payment, a receipt that did not verify. The bank's word
// settles it: Reconcile (merchantd runs it at start and every 30 s) and a
// look at the order (CheckOrder: the admin OrderStatus, Refund) ask the
// bank, record the receipt if it has one, and drop the mark once the bank
// can no longer accept a payment of the order.

func depositKey(orderID string) []byte { return append([]byte("d/"), orderID...) }

// Reconcile settles every deposit in flight, and returns how many orders
// it recorded paid. It goes on past an order it cannot settle, and returns
// the first such error; the mark stays for the next run.
func (m *Merchant) Reconcile(ctx context.Context) (paid int, err error) {
	var ids []string
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("d/"), UpperBound: []byte("d0")})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		ids = append(ids, string(it.Key()[len("d/"):]))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	var errs []error
	for _, id := range ids {
		ok, err := m.settleDeposit(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("order %s: %w", id, err))
		}
		if ok {
			paid++
		}
	}
	if len(errs) > 0 {
		return paid, fmt.Errorf("merchant: %d deposits in flight not settled; first: %w", len(errs), errs[0])
	}
	return paid, nil
}

// CheckOrder is Order, after asking the bank about a deposit in flight for
// it, if there is one: a shop polling an unpaid order learns of a payment
// the merchant did not see through. It asks the bank for no other order.
func (m *Merchant) CheckOrder(ctx context.Context, id string) (*Order, error) {
	o, err := m.Order(id)
	if err != nil || o.Receipt != nil {
		return o, err
	}
	if inFlight, err := m.has(depositKey(id)); err != nil || !inFlight {
		return o, err
	}
	if _, err := m.settleDeposit(ctx, id); err != nil {
		return nil, fmt.Errorf("merchant: order %s has a deposit in flight, and asking the bank about it failed: %w", id, err)
	}
	return m.Order(id)
}

// settleDeposit asks the bank about the deposit in flight for order id:
// paid, the receipt is verified and the order recorded paid (paid true);
// not paid and too late to be (past ExpiresAt + 2*MaxClockSkew: the bank's
// grace, and the clocks' difference), the mark is dropped; otherwise the
// mark stays.
func (m *Merchant) settleDeposit(ctx context.Context, id string) (paid bool, err error) {
	o, err := m.Order(id)
	if errors.Is(err, ErrNoOrder) || (err == nil && o.Receipt != nil) {
		return false, m.db.Delete(depositKey(id), pebble.NoSync) // settled meanwhile
	}
	if err != nil {
		return false, err
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		return false, err
	}
	h := pr.Hash()
	resp, err := m.bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: h[:]})
	if status.Code(err) == codes.NotFound {
		if !m.now().After(o.ExpiresAt.Add(2 * ecash.MaxClockSkew)) {
			return false, nil
		}
		m.log.Info("deposit in flight dropped: the bank has no payment of the order and can take none now", "order", id)
		return false, m.db.Delete(depositKey(id), pebble.NoSync)
	}
	if err != nil {
		return false, err
	}
	if err := m.recordPaid(ctx, o, pr, resp.Receipt); err != nil {
		return false, err
	}
	m.tr.Record(m.now(), "deposit-receipt", resp.Receipt, id)
	m.log.Info("deposit in flight settled: the bank has the payment", "order", id)
	return true, nil
}
