package merchant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Endorsed sales the bank has not answered, to the till's knowledge:
// e/<EPOID key>, written in the synced batch that stores the endorsement and
// deleted in the one that stores the bank's receipt. An answer lost, a till
// that died after endorsing, a customer who never came back: Reconcile
// forwards each marked sale's stored endorsement again, and the bank
// answers a decided EPOID from its record or decides it now (a signed
// decline if the EPO has expired); refused for a rate, the till asks the
// bank's record by status query (settleByStatus). So every sale the merchant endorsed ends
// with the bank's signed word in the till's store, as NetBill's atomicity
// asks, whether or not anyone asks about it; or, if the bank refuses it
// outright (an error, not a signed decline) and holds no record of it,
// without the endorsement (settleRefused in till.go): a refused order sent
// again would only be refused again, for ever.
//
// Deliveries that were never endorsed (a quote accepted, goods sent, no
// payment order) can no longer be paid once DeliveryTTL has passed since
// their EPOID's time; Reconcile deletes them, from a watermark on, so a
// client accepting quotes it never pays for stores at most DeliveryTTL's
// worth of them. (The watermark of a version that kept them for the
// longest EPO lifetime is behind this one's: the first run deletes what it
// kept beyond DeliveryTTL, none of which can be paid any more.)
var (
	prefixEndorsed = []byte("e/")
	// keyEndorsedMarks: the store keeps e/ marks. Set by the first Open
	// that marks the endorsed, unanswered sales an older version left.
	keyEndorsedMarks = []byte("m/endorsed-marks")
	// keyPrunedTo: deliveries before this EPOID time (Unix milliseconds)
	// that were never endorsed are deleted.
	keyPrunedTo = []byte("m/pruned-to")
)

func endorsedKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append(bytes.Clone(prefixEndorsed), k[:]...)
}

// markEndorsed, at Open, marks every endorsed sale without a receipt once,
// for a store written before the marks were kept.
func (m *Merchant) markEndorsed() error {
	if done, err := m.has(keyEndorsedMarks); err != nil || done {
		return err
	}
	b := m.db.NewBatch()
	defer b.Close()
	err := m.eachSale(prefixSale, []byte("s0"), func(_ []byte, s *sale) error {
		if s.Endorsement != nil && s.Receipt == nil {
			return b.Set(endorsedKey(s.EPOID), nil, nil)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := b.Set(keyEndorsedMarks, nil, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// reconcileSales forwards the stored endorsement of every marked sale, and
// returns how many it settled. It goes on past a sale it cannot settle and
// returns the first such error; that sale's mark stays for the next run.
func (m *Merchant) reconcileSales(ctx context.Context) (settled int, err error) {
	var keys [][]byte
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: prefixEndorsed, UpperBound: []byte("e0")})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	var errs []error
	for _, k := range keys {
		if err := m.settleSale(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		settled++
	}
	if len(errs) > 0 {
		return settled, fmt.Errorf("merchant: endorsed sales not settled: %d; first: %w", len(errs), errs[0])
	}
	return settled, nil
}

// settleSale forwards again the endorsement of the sale marked by mark.
func (m *Merchant) settleSale(ctx context.Context, mark []byte) error {
	s, err := m.loadSaleAt(append(bytes.Clone(prefixSale), mark[len(prefixEndorsed):]...))
	if errors.Is(err, ErrNoSale) || (err == nil && (s.Receipt != nil || s.Endorsement == nil)) {
		return m.db.Delete(mark, pebble.NoSync) // settled meanwhile: only asked again if it survives a crash
	}
	if err != nil {
		return err
	}
	epo, err := echeck.DecodeSignedEPO(s.EPO)
	if err != nil {
		return fmt.Errorf("merchant: corrupt sale record %s: %w", s.EPOID, err)
	}
	if _, err := m.forward(ctx, epo, s.Endorsement); err != nil {
		// Refused for a rate: the bank charges a re-submission of a
		// decided order to its merchant and customer together, a rate the
		// customer, or anyone holding one of its orders, can keep used up
		// by having the till forward it again. The till's own status query
		// is charged to the merchant's own rate alone.
		if status.Code(err) == codes.ResourceExhausted {
			serr := m.settleByStatus(ctx, epo)
			if serr == nil {
				m.log.Info("endorsed sale settled with the bank by status query, its re-submission refused for a rate", "epoid", s.EPOID.String())
				return nil
			}
			err = errors.Join(err, serr)
		}
		// A refusal that settled the sale (settleRefused) took the mark.
		if marked, herr := m.has(mark); herr != nil || marked {
			return fmt.Errorf("sale %s: %w", s.EPOID, err)
		}
		return nil
	}
	m.log.Info("endorsed sale settled with the bank", "epoid", s.EPOID.String())
	return nil
}

// settleByStatus settles an endorsed sale from the bank's record of it,
// asked by the till's status query: the receipt for epo, verified, is
// stored and recorded in the transcript as forward does with one. The one
// place both ways of settling a marked sale by status go through
// (Reconcile's, refused for a rate, and settleRefused's), so that neither
// stores a receipt the transcript lacks (SaleStatus, asked by the
// merchant, records one it settles itself). A receipt of another EPO
// under this EPOID does not verify (verifyReceipt logs it as an error). No
// record (NotFound, the query's own error) settles nothing here: the
// caller decides.
func (m *Merchant) settleByStatus(ctx context.Context, epo *echeck.SignedEPO) error {
	resp, err := m.askStatus(ctx, epo.EPOID)
	if err != nil {
		return err
	}
	if _, err := m.verifyReceipt(ctx, resp.Receipt, epo); err != nil {
		return err
	}
	if err := m.recordReceipt(epo.EPOID, resp.Receipt, resp.LogIndex); err != nil {
		return err
	}
	m.tr.Record(m.now(), "epo-receipt", resp.Receipt, epo.EPOID.String())
	return nil
}

// pruneDeliveries deletes the deliveries never endorsed whose EPOID time
// is before now less DeliveryTTL and the skew (SubmitEPO refuses a payment
// order for them), from the watermark on, and moves the watermark. Returns
// how many it deleted.
func (m *Merchant) pruneDeliveries() (int, error) {
	cutoff := m.now().Add(-DeliveryTTL - ecash.MaxClockSkew).UnixMilli()
	from, err := m.prunedTo()
	if err != nil || cutoff <= from {
		return 0, err
	}
	bound := func(ms int64) []byte {
		k := binary.BigEndian.AppendUint64(bytes.Clone(prefixSale), m.account)
		return binary.BigEndian.AppendUint64(k, uint64(ms))
	}
	total := 0
	for next := bound(max(from, 0)); next != nil; {
		n, err := m.pruneSome(&next, bound(cutoff))
		total += n
		if err != nil {
			return total, err
		}
	}
	// Unsynced, as the deletions: a crash only leaves deliveries to delete
	// again.
	return total, m.db.Set(keyPrunedTo, binary.BigEndian.AppendUint64(nil, uint64(cutoff)), pebble.NoSync)
}

// pruneBatch is the most sales pruneSome reads under saleMu at once: the
// first prune of a store written before DeliveryTTL may have a month of
// deliveries to delete, and payment orders wait for saleMu meanwhile.
var pruneBatch = 4096 // a variable for the tests

var errBatchFull = errors.New("merchant: prune batch full")

// pruneSome deletes the unendorsed deliveries among the next pruneBatch
// sales from *next to hi, under saleMu (so that no delivery is endorsed
// between being read here and deleted), and sets *next to where the next
// batch starts, nil when none is left.
func (m *Merchant) pruneSome(next *[]byte, hi []byte) (int, error) {
	m.saleMu.Lock()
	defer m.saleMu.Unlock()
	b := m.db.NewBatch()
	defer b.Close()
	n, read := 0, 0
	lo := *next
	*next = nil
	err := m.eachSale(lo, hi, func(key []byte, s *sale) error {
		if read == pruneBatch {
			*next = bytes.Clone(key)
			return errBatchFull
		}
		read++
		if s.EPO != nil {
			return nil
		}
		n++
		return b.Delete(key, nil)
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return 0, err
	}
	return n, b.Commit(pebble.NoSync)
}

// prunedTo is the watermark: deliveries before this EPOID time (Unix
// milliseconds) that were never endorsed are deleted.
func (m *Merchant) prunedTo() (int64, error) {
	v, err := m.get(keyPrunedTo)
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}
