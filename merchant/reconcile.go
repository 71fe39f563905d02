package merchant

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Deposits in flight. Pay marks each deposit it sends, d/<order id> 0x00
// <SHA-256 of the sealed payment> (empty value), so that the bank refusing
// one attempt (anyone who knows an order id can send junk) drops that
// attempt's mark and never another's; not if the mark was there before
// the attempt (the same bytes sent before, the answer lost) or another
// call sent the same bytes meanwhile: that send may still commit (Pay,
// ErrPaymentPending). The synced batch that records the
// order paid deletes all the order's marks. A mark left over is a deposit
// whose outcome the merchant did not learn: an answer lost, the process
// dead before it recorded the payment, a receipt that did not verify. The
// bank's word settles it: Reconcile (merchantd runs it at start and every
// 30 s) and a look at the order (CheckOrder: the admin OrderStatus,
// Refund) ask the bank about an order with any mark, record the receipt if
// it has one, and drop the marks once the bank can no longer accept a
// payment of the order.
//
// A mark d/<order id>, beside any attempts', is Open's after a run that
// did not close cleanly: a power loss may have taken marks written without
// a sync, so every order that could have been paid since that run opened
// is asked about (stores from before attempts had keys of their own hold
// such marks too). It stays until the bank can take no payment of the
// order, asked about at start and then only at that end (markAsked): a
// send of the last run may still be committing. While it stands, Pay
// takes a refusal of any send for the order, but one for what its bytes
// are (refusedForItsBytes), as a refusal of a send that may have been
// made before: the payment is pending.

func attemptKey(orderID string, sealed []byte) []byte {
	h := sha256.Sum256(sealed)
	return append(append(orderMarkKey(orderID), 0), h[:]...)
}

func orderMarkKey(orderID string) []byte { return append([]byte("d/"), orderID...) }

// markedOrder is the order id of a mark's key.
func markedOrder(key []byte) string {
	id := key[len("d/"):]
	if i := bytes.IndexByte(id, 0); i >= 0 {
		id = id[:i]
	}
	return string(id)
}

// markRange bounds order id's marks: d/<id> and d/<id> 0x00 …, short of
// any other order's.
func markRange(id string) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: orderMarkKey(id), UpperBound: append(orderMarkKey(id), 1)}
}

// marks returns the keys of order id's marks.
func (m *Merchant) marks(id string) ([][]byte, error) {
	it, err := m.db.NewIter(markRange(id))
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	return keys, errors.Join(it.Error(), it.Close())
}

// dropMarks deletes order id's marks in b.
func (m *Merchant) dropMarks(b *pebble.Batch, id string) error {
	keys, err := m.marks(id)
	for _, k := range keys {
		err = errors.Join(err, b.Delete(k, nil))
	}
	return err
}

// clearMarks deletes order id's marks now, unsynced: a mark that survives
// a crash is only asked about again.
func (m *Merchant) clearMarks(id string) error {
	b := m.db.NewBatch()
	defer b.Close()
	if err := m.dropMarks(b, id); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// Reconcile settles every deposit in flight, and returns how many orders
// it recorded paid. It goes on past an order it cannot settle, and returns
// the first such error; the marks stay for the next run. It also settles
// the till's endorsed sales the bank's answer to which it lacks, and
// deletes deliveries that can no longer be paid for (tillreconcile.go).
func (m *Merchant) Reconcile(ctx context.Context) (paid int, err error) {
	if err := m.begin(); err != nil {
		return 0, err
	}
	defer m.inflight.Done()
	var ids []string
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("d/"), UpperBound: []byte("d0")})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		// An order's marks are adjacent: one question per order.
		if id := markedOrder(it.Key()); len(ids) == 0 || ids[len(ids)-1] != id {
			ids = append(ids, id)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	var errs []error
	for _, id := range ids {
		if wait, err := m.waitingNow(id); err != nil || wait {
			if err != nil {
				errs = append(errs, fmt.Errorf("order %s: %w", id, err))
			}
			continue
		}
		ok, err := m.settleDeposit(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("order %s: %w", id, err))
		}
		if ok {
			paid++
		}
	}
	var derr error
	if len(errs) > 0 {
		derr = fmt.Errorf("merchant: deposits in flight not settled: %d; first: %w", len(errs), errs[0])
	}
	_, serr := m.reconcileSales(ctx)
	pruned, perr := m.pruneDeliveries()
	if pruned > 0 {
		m.log.Info("deliveries never paid for deleted", "count", pruned)
	}
	return paid, errors.Join(derr, serr, perr)
}

// CheckOrder is Order, after asking the bank about a deposit in flight for
// it, if there is one: a shop polling an unpaid order learns of a payment
// the merchant did not see through. It asks the bank for no other order.
func (m *Merchant) CheckOrder(ctx context.Context, id string) (*Order, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	return m.checkOrder(ctx, id)
}

// checkOrder is CheckOrder, for a caller that has begun.
func (m *Merchant) checkOrder(ctx context.Context, id string) (*Order, error) {
	o, err := m.order(id)
	if err != nil || o.Receipt != nil {
		return o, err
	}
	if keys, err := m.marks(id); err != nil || len(keys) == 0 {
		return o, err
	}
	if wait, err := m.waitingNow(id); err != nil || wait {
		return o, err // asked at start; not at every look
	}
	if _, err := m.settleDeposit(ctx, id); err != nil {
		return nil, fmt.Errorf("merchant: order %s has a deposit in flight, and asking the bank about it failed: %w", id, err)
	}
	return m.order(id)
}

// markAsked is the value of Open's mark of an order once the bank said it
// has no payment of it: Reconcile asks again only when the bank can take
// none (and drops the mark then), not at every pass, however many orders a
// crash marked. The mark stays till then: a send of the last run may still
// be committing (in a paused replica's pipeline), and Pay takes every send
// for the order as one that may have been made before.
var markAsked = []byte{1}

// waitingNow reports whether order id has nothing to ask the bank now: its
// only mark is Open's, asked about already (markAsked), and the bank can
// still take a payment of it (asked again, to drop the mark, once it
// cannot).
func (m *Merchant) waitingNow(id string) (bool, error) {
	if w, err := m.waiting(id); err != nil || !w {
		return false, err
	}
	o, err := m.order(id)
	if err != nil {
		return false, nil // settleDeposit clears the marks of an order not found
	}
	return o.Receipt == nil && o.payable(m.now()), nil
}

// waiting reports whether order id's only mark is Open's, asked about
// already (markAsked).
func (m *Merchant) waiting(id string) (bool, error) {
	it, err := m.db.NewIter(markRange(id))
	if err != nil {
		return false, err
	}
	n, asked := 0, false
	for it.First(); it.Valid() && n < 2; it.Next() {
		n++
		asked = bytes.Equal(it.Key(), orderMarkKey(id)) && bytes.Equal(it.Value(), markAsked)
	}
	return n == 1 && asked, errors.Join(it.Error(), it.Close())
}

// settleDeposit asks the bank about the deposits in flight for order id:
// paid, the receipt is verified and the order recorded paid (paid true);
// not paid and too late to be (past ExpiresAt + 2*MaxClockSkew: the bank's
// grace, and the clocks' difference), the marks are dropped; not paid yet,
// the marks stay, Open's marked asked (markAsked).
func (m *Merchant) settleDeposit(ctx context.Context, id string) (paid bool, err error) {
	o, err := m.order(id)
	if errors.Is(err, ErrNoOrder) || (err == nil && o.Receipt != nil) {
		return false, m.clearMarks(id) // settled meanwhile
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
		if o.payable(m.now()) {
			if crashed, err := m.has(orderMarkKey(id)); err != nil || !crashed {
				return false, err
			}
			return false, m.db.Set(orderMarkKey(id), markAsked, pebble.NoSync)
		}
		m.log.Info("deposit in flight dropped: the bank has no payment of the order and can take none now", "order", id)
		return false, m.clearMarks(id)
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

// keyClosed is Close's last write. A synced write puts every write before
// it on disk, so with it there every mark is there too. keyOpened holds
// when the current run opened the store (Unix milliseconds).
var (
	keyClosed = []byte("m/closed")
	keyOpened = []byte("m/opened")
)

// reopen, last in Open, deletes Close's marker and records when this run
// opened. Without the marker (the last run did not close cleanly, or the
// store is older than it) marks may have been lost: it marks every unpaid
// order that could have been paid since the last run opened (however long
// the machine was down since), for Reconcile to ask the bank about once.
// One synced batch.
func (m *Merchant) reopen() error {
	closed, err := m.has(keyClosed)
	if err != nil {
		return err
	}
	b := m.db.NewBatch()
	defer b.Close()
	if !closed {
		var since time.Time // zero: every unpaid order, the run's start unknown
		if v, closer, err := m.db.Get(keyOpened); err == nil {
			if len(v) == 8 {
				since = time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
			}
			closer.Close()
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return err
		}
		n, err := m.markOpenOrders(b, since)
		if err != nil {
			return err
		}
		if n > 0 {
			m.log.Warn("the last run did not close cleanly: asking the bank about the orders that could have been paid meanwhile", "orders", n)
		}
	}
	if err := b.Delete(keyClosed, nil); err != nil {
		return err
	}
	if err := b.Set(keyOpened, binary.BigEndian.AppendUint64(nil, uint64(m.now().UnixMilli())), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// markOpenOrders marks in b every unpaid order that could still be paid at
// since (not past ExpiresAt + 2*MaxClockSkew then), and returns how many.
func (m *Merchant) markOpenOrders(b *pebble.Batch, since time.Time) (n int, err error) {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("o/"), UpperBound: []byte("o0")})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		o, err := decodeOrder(it.Value())
		if err != nil {
			return 0, err
		}
		if o.Receipt != nil || !o.payable(since) {
			continue
		}
		if err := b.Set(orderMarkKey(o.ID), nil, nil); err != nil {
			return 0, err
		}
		n++
	}
	return n, it.Error()
}
