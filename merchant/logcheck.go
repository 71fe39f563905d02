package merchant

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// The merchant checks that the bank's audit log records each of its
// deposits with exactly the coins of its receipt, and each payment order
// (NetBill EPO) the bank decided for it with the EPOID, EPO hash, price and
// decision of its receipt, against checkpoints its witness accepted
// (m/witness: the newest seen, so a bank that shows two histories is
// caught). A verified order is marked v/<order id>; a verified payment
// order w/<EPOID key>. The index the bank gave with a payment order's
// receipt is kept at l/<EPOID key>.

var keyWitness = []byte("m/witness")

func verifiedKey(orderID string) []byte { return append([]byte("v/"), orderID...) }

func saleLogKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append([]byte("l/"), k[:]...)
}

func saleVerifiedKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append([]byte("w/"), k[:]...)
}

// saleLogIndex returns the log index the bank gave with the receipt of
// EPOID id; known is false if it gave none.
func (m *Merchant) saleLogIndex(id echeck.EPOID) (index int64, known bool, err error) {
	v, closer, err := m.db.Get(saleLogKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= 0 {
		return 0, false, fmt.Errorf("merchant: corrupt log index of EPOID %s", id)
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// ErrNoAuditLog: the merchant was opened without the bank's AuditLog client.
var ErrNoAuditLog = errors.New("merchant: no audit-log client configured")

// LogReport is what VerifyLog found.
type LogReport struct {
	Checkpoint auditlog.Checkpoint
	Signed     []byte // Checkpoint as the bank signed it: what "audit log --from" reads
	Verified   int    // deposits and payment orders found in the log, matching their receipts
	// Waiting: deposits and payment orders whose entry the checkpoint does
	// not hold and need not yet: answered since it was fetched, or (by the
	// bank's clock) before the log began or within ecash.MaxClockSkew after,
	// the receipt's date taken as no earlier than the skew before its
	// request's (the order's CreatedAt, the EPOID's time).
	Waiting int
	// AdoptedKeySet: the checkpoint named a newer logged key set than the
	// bank served, which follows the one held, and the merchant took it.
	AdoptedKeySet bool
}

// VerifyLog checks every paid order and every decided payment order not
// yet checked against the bank's log. A fork is an *auditlog.ForkError; an
// entry that does not match its receipt, or a deposit or payment order
// answered before the checkpoint was fetched and after the log began
// (logclient.Start.Unlogged) that the checkpoint does not hold, wraps
// logclient.ErrMismatch and names the order (and the entry); so does a
// newer logged key set (the checkpoint's keyset line names it) that does
// not follow the one held, or a false keyset line, reported (with the
// report) once the other checks were made. A newer one that follows is
// taken (LogReport.AdoptedKeySet).
func (m *Merchant) VerifyLog(ctx context.Context) (*LogReport, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	if m.logc == nil {
		return nil, ErrNoAuditLog
	}
	saved, err := m.get(keyWitness)
	if err != nil {
		return nil, err
	}
	// The deposits paid and payment orders decided before the checkpoint
	// is fetched: the bank answered them before it signed it, and an
	// honest bank commits an entry before it answers. One answered
	// meanwhile is not evidence yet.
	depositsBefore, err := m.unverifiedDeposits()
	if err != nil {
		return nil, err
	}
	salesBefore, err := m.unverifiedSales()
	if err != nil {
		return nil, err
	}
	var cp auditlog.Checkpoint
	var next []byte
	err = m.verifyBank(ctx, func(ks *ecash.KeySet) error {
		var err error
		cp, next, err = logclient.Refresh(ctx, m.logc, ks, saved)
		if errors.Is(err, auditlog.ErrCheckpointSignature) {
			// No key of ks signed the checkpoint: perhaps a newer one.
			err = fmt.Errorf("%w: %w", ecash.ErrUnknownSigner, err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// A checkpoint of a non-empty log without a keyset line is not one an
	// honest bank of this version signs: refused before it is saved.
	if err := auditlog.RequireKeySet(cp); err != nil {
		return &LogReport{Checkpoint: cp}, fmt.Errorf("merchant: %w: %w", logclient.ErrMismatch, err)
	}
	if err := m.db.Set(keyWitness, next, pebble.Sync); err != nil {
		return nil, err
	}
	signed, err := auditlog.SavedCheckpoint(next)
	if err != nil {
		return nil, err
	}
	rep := &LogReport{Checkpoint: cp, Signed: signed}
	// A key-set finding (logclient.ErrMismatch) is reported after the
	// other checks, as the wallet does, so that it stops none of them,
	// and with any error that stops them.
	keyErr := m.checkKeySetLine(ctx, cp, rep)
	if keyErr != nil && !errors.Is(keyErr, logclient.ErrMismatch) {
		return rep, keyErr
	}
	deposits, err := m.heldDeposits(ctx, depositsBefore)
	if err != nil {
		return rep, errors.Join(err, keyErr)
	}
	sales, err := m.heldSales(ctx, salesBefore)
	if err != nil {
		return rep, errors.Join(err, keyErr)
	}
	// unlogged: answers the checkpoint must hold and does not, reported
	// with the key-set finding after the other checks.
	var unlogged error
	began := logclient.NewStart(ctx, m.logc, cp)
	for _, a := range append(deposits, sales...) {
		finding, err := m.checkHeld(ctx, began, a, rep)
		if err != nil {
			return rep, errors.Join(err, unlogged, keyErr)
		}
		unlogged = errors.Join(unlogged, finding)
	}
	return rep, errors.Join(unlogged, keyErr)
}

// heldAnswer is an answer of the bank the merchant holds a receipt of (a
// deposit's or a payment order's), to find in its log.
type heldAnswer struct {
	name     string    // how a finding names it: "order <id>", "payment order <EPOID>"
	what     string    // what logclient.Start.Unlogged calls it
	answered time.Time // the bank's time on its signed receipt
	// asked: the time on the request the receipt answers, which the bank
	// refuses when dated further ahead of its clock than the skew (a
	// deposit's payment request's CreatedAt, a payment order's EPOID
	// time), so that a bank cannot make an answer it did not log wait for
	// ever by dating it before its log began (logclient.Start.Unlogged).
	asked    time.Time
	before   bool  // held before the checkpoint was fetched
	index    int64 // its entry, as the bank or its log gave it; <= 0: none
	expect   logclient.Expect
	verified []byte // the key marking it checked
}

// checkHeld checks answer a against the checkpoint began covers: its entry
// must be in it and record a.expect (then a is marked checked), or, if
// the checkpoint does not hold it, a must be one that may yet be logged
// (counted waiting): answered while VerifyLog ran, or by the bank's clock,
// bounded by a.asked, before its log began (logclient.Start.Unlogged).
// Otherwise it returns
// the finding, wrapping logclient.ErrMismatch, for the caller to report
// after the other checks; a matching failure or a failed fetch is err.
func (m *Merchant) checkHeld(ctx context.Context, began *logclient.Start, a heldAnswer, rep *LogReport) (finding, err error) {
	cp := began.Checkpoint()
	if a.index <= 0 || a.index >= cp.Size {
		if a.before {
			f, err := began.Unlogged(a.what, a.expect.Ref, a.answered, a.asked, max(a.index, 0))
			if err != nil {
				return nil, err
			}
			if f != "" {
				return fmt.Errorf("merchant: %s: %w: %s", a.name, logclient.ErrMismatch, f), nil
			}
		}
		rep.Waiting++
		return nil, nil
	}
	e, err := logclient.Entry(ctx, m.logc, cp, a.index)
	if err != nil {
		return nil, err
	}
	if err := a.expect.Match(e); err != nil {
		return nil, fmt.Errorf("merchant: %s: %w", a.name, err)
	}
	if err := m.db.Set(a.verified, nil, pebble.Sync); err != nil {
		return nil, err
	}
	rep.Verified++
	return nil, nil
}

// heldDeposits returns the paid orders not yet checked, each with the log
// index the bank gives for it now; before holds those paid before the
// checkpoint was fetched.
func (m *Merchant) heldDeposits(ctx context.Context, before map[string]paidOrder) ([]heldAnswer, error) {
	due, err := m.unverifiedDeposits()
	if err != nil {
		return nil, err
	}
	out := make([]heldAnswer, 0, len(due))
	for id, p := range due {
		r := p.receipt
		st, err := m.bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: r.PaymentHash[:]})
		if status.Code(err) == codes.NotFound {
			// The bank denies a deposit it signed a receipt for: looked up
			// in its log instead, and judged as one it did not log, so
			// that a denial neither stops every other check nor hides
			// the evidence.
			st = &pb.DepositResponse{}
			if st.LogIndex, _, err = logclient.Find(ctx, m.logc, r.PaymentHash); err != nil {
				return nil, fmt.Errorf("merchant: log index of order %s: %w", id, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("merchant: log index of order %s: %w", id, err)
		}
		_, paid := before[id]
		out = append(out, heldAnswer{
			name: "order " + id, what: "the deposit of payment", answered: r.DepositedAt, asked: p.created, before: paid, index: st.LogIndex,
			// The receipt's total is what the entry credits: its amount
			// (the coins' value) less its deposit fees.
			expect:   logclient.Expect{Kind: auditlog.KindDeposit, Ref: r.PaymentHash, Coins: r.Coins, Merchant: m.account, Amount: r.Total},
			verified: verifiedKey(id),
		})
	}
	return out, nil
}

// heldSales returns the payment orders decided and not yet checked, each
// with the index the bank gave with its receipt (asked of its log by EPO
// hash if it gave none); before holds those decided before the checkpoint
// was fetched. Each entry must record the receipt's EPOID, EPO hash, price
// and decision, crediting this merchant.
func (m *Merchant) heldSales(ctx context.Context, before map[[24]byte]*echeck.Receipt) ([]heldAnswer, error) {
	due, err := m.unverifiedSales()
	if err != nil {
		return nil, err
	}
	out := make([]heldAnswer, 0, len(due))
	for k, r := range due {
		index, known, err := m.saleLogIndex(r.EPOID)
		if err != nil {
			return nil, err
		}
		if !known {
			if index, _, err = logclient.Find(ctx, m.logc, r.EPOHash); err != nil {
				return nil, fmt.Errorf("merchant: log index of payment order %s: %w", r.EPOID, err)
			}
		}
		what := "the decline of payment order"
		if r.Decision == echeck.Approved {
			what = "the approval of payment order"
		}
		_, decided := before[k]
		out = append(out, heldAnswer{
			name: "payment order " + r.EPOID.String(), what: what, answered: r.DecidedAt, before: decided, index: index,
			asked: r.EPOID.Timestamp,
			expect: logclient.Expect{Kind: auditlog.KindCheck, Ref: r.EPOHash, Approved: r.Decision == echeck.Approved,
				EPOID: r.EPOID.String(), Merchant: m.account, Amount: r.Price},
			verified: saleVerifiedKey(r.EPOID),
		})
	}
	return out, nil
}

// unverifiedSales returns the receipts of payment orders decided and not
// yet checked, by EPOID key.
func (m *Merchant) unverifiedSales() (map[[24]byte]*echeck.Receipt, error) {
	out := map[[24]byte]*echeck.Receipt{}
	err := m.eachSale(prefixSale, []byte("s0"), func(_ []byte, s *sale) error {
		if s.Receipt == nil {
			return nil
		}
		if done, err := m.has(saleVerifiedKey(s.EPOID)); err != nil || done {
			return err
		}
		r, err := echeck.DecodeReceipt(s.Receipt)
		if err != nil {
			return fmt.Errorf("merchant: corrupt sale record: %w", err)
		}
		out[s.EPOID.Key()] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// paidOrder is a paid order's deposit receipt and its payment request's
// CreatedAt: the merchant's own time, which the bank refuses further ahead
// of its clock than the skew (bank.Deposit), bounding the receipt's.
type paidOrder struct {
	receipt *ecash.DepositReceipt
	created time.Time
}

// unverifiedDeposits returns the paid orders not yet checked.
func (m *Merchant) unverifiedDeposits() (map[string]paidOrder, error) {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte("o/"), UpperBound: []byte("o0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]paidOrder{}
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
		out[o.ID] = paidOrder{receipt: r, created: o.CreatedAt}
	}
	return out, it.Error()
}
