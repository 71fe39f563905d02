package merchant

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The merchant checks that the bank's audit log records each of its
// deposits with exactly the coins of its receipt, against checkpoints its
// witness accepted (m/witness: the newest seen, so a bank that shows two
// histories is caught). A verified order is marked v/<order id>.

var keyWitness = []byte("m/witness")

func verifiedKey(orderID string) []byte { return append([]byte("v/"), orderID...) }

// ErrNoAuditLog: the merchant was opened without the bank's AuditLog client.
var ErrNoAuditLog = errors.New("merchant: no audit-log client configured")

// LogReport is what VerifyLog found.
type LogReport struct {
	Checkpoint auditlog.Checkpoint
	Verified   int // deposits found in the log, matching their receipts
	Waiting    int // deposits without a log entry (made before the log existed)
}

// VerifyLog checks every paid order not yet checked against the bank's
// log. A fork is an *auditlog.ForkError; an entry that does not match its
// receipt wraps logclient.ErrMismatch.
func (m *Merchant) VerifyLog(ctx context.Context) (*LogReport, error) {
	if m.logc == nil {
		return nil, ErrNoAuditLog
	}
	var saved []byte
	if raw, closer, err := m.db.Get(keyWitness); err == nil {
		saved = append([]byte(nil), raw...)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	cp, saved, err := logclient.Refresh(ctx, m.logc, m.keyset, saved)
	if err != nil {
		return nil, err
	}
	if err := m.db.Set(keyWitness, saved, pebble.Sync); err != nil {
		return nil, err
	}
	rep := &LogReport{Checkpoint: cp}
	due, err := m.unverifiedDeposits()
	if err != nil {
		return nil, err
	}
	for id, r := range due {
		st, err := m.bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: r.PaymentHash[:]})
		if err != nil {
			return nil, fmt.Errorf("merchant: log index of order %s: %w", id, err)
		}
		if st.LogIndex <= 0 || st.LogIndex >= cp.Size {
			rep.Waiting++
			continue
		}
		e, err := logclient.Entry(ctx, m.logc, cp, st.LogIndex)
		if err != nil {
			return nil, err
		}
		if err := (logclient.Expect{Kind: auditlog.KindDeposit, Ref: r.PaymentHash, Coins: r.Coins}).Match(e); err != nil {
			return nil, fmt.Errorf("merchant: order %s: %w", id, err)
		}
		if err := m.db.Set(verifiedKey(id), nil, pebble.Sync); err != nil {
			return nil, err
		}
		rep.Verified++
	}
	return rep, nil
}

// unverifiedDeposits returns the receipts of paid orders not yet checked.
func (m *Merchant) unverifiedDeposits() (map[string]*ecash.DepositReceipt, error) {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("o/"), UpperBound: []byte("o0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]*ecash.DepositReceipt{}
	for it.First(); it.Valid(); it.Next() {
		o, err := decodeOrder(it.Value())
		if err != nil {
			return nil, err
		}
		if o.Receipt == nil {
			continue
		}
		if _, closer, err := m.db.Get(verifiedKey(o.ID)); err == nil {
			closer.Close()
			continue
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return nil, err
		}
		r, err := ecash.DecodeDepositReceipt(o.Receipt)
		if err != nil {
			return nil, err
		}
		out[o.ID] = r
	}
	return out, it.Error()
}
