package merchant

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// The till: the merchant's half of NetBill (Cox, Tygar, Sirbu 1995). It
// quotes prices from the catalogue (steps 1-2), delivers goods encrypted
// under a fresh key K with a globally unique EPOID (steps 3-4), checks the
// customer's signed payment order against exactly what it quoted and
// delivered, endorses it with K sealed to the bank and forwards it (steps
// 5-6), verifies the bank's receipt and hands it back (steps 7-8). It also
// deposits plain signed checks, and asks the bank for the outcome of an
// EPOID with a status query signed by the merchant key.
//
// Durability: a delivery's K, quote and goods hash are stored (synced)
// before the goods leave; an endorsement is stored before it is sent (the
// merchant's point of no return), and the bank's receipt once verified. An
// endorsement the bank refuses outright and holds no record of is dropped
// (settleRefused): it is never sent again. The merchant holds only its own
// Ed25519 key: nothing it stores opens the EPO's private part, which is
// sealed to the bank.
//
// Store layout (beside the orders, in the same Pebble store):
//
//	t/serial-limit    u64: serials below it may have been handed out
//	s/<EPOID key>     sale or check record (echeck.EPOID.Key: 24 bytes)
//	e/<EPOID key>     an endorsed sale the bank's answer to which is not stored
//	m/endorsed-marks  the store keeps e/ marks
//	m/pruned-to       ms: deliveries before it never endorsed are deleted

// QuoteTTL is how long a quote can be accepted (GetGoods).
const QuoteTTL = 5 * time.Minute

// DeliveryTTL is how long after a delivery the till takes the payment order
// for it (SubmitEPO); later ones are refused (echeck.ErrExpired), and a
// delivery never endorsed is deleted soon after (pruneDeliveries). Quotes
// are free and a quote can be accepted again and again: this bounds what
// goods requests never paid for can store. A wallet sends its EPO right
// after the delivery.
const DeliveryTTL = time.Hour

// serialBlock is how many EPOID serials one synced write reserves.
const serialBlock = 1024

// Errors of the till.
var (
	ErrNoProduct = errors.New("merchant: no such product")
	ErrNoSale    = errors.New("merchant: no sale or check under this EPOID")
	// ErrSaleConflict: another payment order was already endorsed under
	// this EPOID.
	ErrSaleConflict = errors.New("merchant: another payment order was already endorsed under this EPOID")
	// ErrBadBankAnswer: the bank's answer did not verify; the order may
	// have been decided all the same (ask again, or by status query).
	ErrBadBankAnswer = errors.New("merchant: the bank's answer does not verify")
)

var (
	keySerialLimit = []byte("t/serial-limit")
	prefixSale     = []byte("s/")
)

func saleKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append(append([]byte(nil), prefixSale...), k[:]...)
}

// sale is what the till keeps per EPOID: for goods, the quote, K and the
// hashes of the delivery; for both kinds, the endorsed EPO, the endorsement
// and the bank's receipt once known.
type sale struct {
	Kind        echeck.Kind
	EPOID       echeck.EPOID
	ProductID   string
	Price       ecash.Amount
	Quote       []byte   // signed quote (goods)
	Key         [32]byte // K (goods)
	GoodsHash   ecash.Hash
	KeyCommit   ecash.Hash
	Delivered   time.Time // goods: delivery time; checks: when received
	EPO         []byte    // the customer's signed EPO, once endorsed
	Endorsement []byte    // the signed endorsement, stored before it is sent
	Receipt     []byte    // the bank's signed receipt, once verified
}

func (s *sale) encode() []byte {
	e := ecash.NewEncoder("merchant/sale")
	e.U8(uint8(s.Kind))
	k := s.EPOID.Encode()
	e.VarBytes(k)
	e.String(s.ProductID)
	e.Amount(s.Price)
	e.VarBytes(s.Quote)
	e.Fixed(s.Key[:])
	e.Fixed(s.GoodsHash[:])
	e.Fixed(s.KeyCommit[:])
	e.I64(s.Delivered.UnixMilli())
	e.VarBytes(s.EPO)
	e.VarBytes(s.Endorsement)
	e.VarBytes(s.Receipt)
	return e.Bytes()
}

func decodeSale(b []byte) (*sale, error) {
	d := ecash.NewDecoder("merchant/sale", b)
	s := &sale{Kind: echeck.Kind(d.U8())}
	idRaw := d.VarBytes(256)
	s.ProductID = d.String()
	s.Price = d.Amount()
	s.Quote = d.VarBytes(ecash.MaxFieldLen)
	copy(s.Key[:], d.Fixed(32))
	copy(s.GoodsHash[:], d.Fixed(32))
	copy(s.KeyCommit[:], d.Fixed(32))
	s.Delivered = time.UnixMilli(d.I64()).UTC()
	s.EPO = d.VarBytes(ecash.MaxFieldLen)
	s.Endorsement = d.VarBytes(ecash.MaxFieldLen)
	s.Receipt = d.VarBytes(ecash.MaxFieldLen)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("merchant: corrupt sale record: %w", err)
	}
	id, err := echeck.DecodeEPOID(idRaw)
	if err != nil {
		return nil, fmt.Errorf("merchant: corrupt sale record: %w", err)
	}
	s.EPOID = id
	for _, f := range []*[]byte{&s.Quote, &s.EPO, &s.Endorsement, &s.Receipt} {
		if len(*f) == 0 {
			*f = nil
		}
	}
	return s, nil
}

// loadSerials reads the reserved serial limit at Open: serials below it may
// have been used before a restart, so numbering resumes there.
func (m *Merchant) loadSerials() error {
	v, closer, err := m.db.Get(keySerialLimit)
	if errors.Is(err, pebble.ErrNotFound) {
		m.nextSerial, m.serialLimit = 1, 1
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) != 8 {
		return fmt.Errorf("merchant: corrupt serial counter")
	}
	m.serialLimit = binary.BigEndian.Uint64(v)
	m.nextSerial = m.serialLimit
	return nil
}

// reserveSerial hands out the next EPOID serial. Serials are reserved in
// blocks with one synced write each, so a serial is never handed out twice,
// even across crashes (a crash skips the rest of a block). Till serials stay
// below 2^63; customers' checks use serials with the top bit set.
func (m *Merchant) reserveSerial() (uint64, error) {
	m.serialMu.Lock()
	defer m.serialMu.Unlock()
	if m.nextSerial >= m.serialLimit {
		limit := m.nextSerial + serialBlock
		if limit >= 1<<63 {
			return 0, errors.New("merchant: EPOID serials exhausted")
		}
		if err := m.db.Set(keySerialLimit, binary.BigEndian.AppendUint64(nil, limit), pebble.Sync); err != nil {
			return 0, err
		}
		m.serialLimit = limit
	}
	s := m.nextSerial
	m.nextSerial++
	return s, nil
}

func (m *Merchant) loadSale(id echeck.EPOID) (*sale, error) { return m.loadSaleAt(saleKey(id)) }

// loadSaleAt reads the sale record at key.
func (m *Merchant) loadSaleAt(key []byte) (*sale, error) {
	v, closer, err := m.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNoSale
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return decodeSale(v)
}

// eachSale calls f with each sale record whose key is in [lo, hi), and
// its key (valid during the call only), in key order: by EPOID.
func (m *Merchant) eachSale(lo, hi []byte, f func(key []byte, s *sale) error) error {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid() && err == nil; it.Next() {
		var s *sale
		if s, err = decodeSale(it.Value()); err == nil {
			err = f(it.Key(), s)
		}
	}
	return errors.Join(err, it.Error(), it.Close())
}

func (m *Merchant) storeSale(s *sale) error {
	return m.db.Set(saleKey(s.EPOID), s.encode(), pebble.Sync)
}

// Account is the merchant's account at the bank.
func (m *Merchant) Account() uint64 { return m.account }

// Catalogue is the till's catalogue (nil if the merchant sells no goods).
func (m *Merchant) Catalogue() *Catalogue { return m.cat }

// Quote answers a price request (NetBill steps 1-2) with a quote for the
// catalogue price, signed by the merchant and valid for QuoteTTL. Quotes are
// not stored: GetGoods recognises its own by the signature. A bid, if any,
// must be in the price's currency; the till quotes its list price whatever
// the bid (the customer decides whether to take it).
func (m *Merchant) Quote(raw []byte) ([]byte, error) {
	r, err := echeck.DecodePriceRequest(raw)
	if err != nil {
		return nil, err
	}
	if err := ecash.CheckEd25519Key(r.Customer); err != nil {
		return nil, fmt.Errorf("price request: customer key: %w", err)
	}
	p, ok := m.cat.Product(r.ProductID)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoProduct, r.ProductID)
	}
	if r.Bid.Currency != "" && r.Bid.Currency != p.Price.Currency {
		return nil, fmt.Errorf("%w: bid in %s, the price is in %s", ecash.ErrCurrencyMismatch, r.Bid.Currency, p.Price.Currency)
	}
	now := m.now()
	q := echeck.NewQuote(r, m.account, p.Price, now.Add(QuoteTTL), m.key)
	out := q.Encode()
	m.tr.Record(now, "price-request", raw, r.ProductID)
	m.tr.Record(now, "quote", out, r.ProductID)
	return out, nil
}

// GetGoods accepts one of the till's quotes (NetBill steps 3-4): it checks
// the quote is the till's own and still valid, allocates a globally unique
// EPOID (merchant account, delivery time, a serial from a persistent
// counter), encrypts the product under a fresh key K, and stores K, the
// quote and the goods hash durably before returning the encoded delivery,
// which an EPO may pay within DeliveryTTL.
func (m *Merchant) GetGoods(ctx context.Context, rawQuote []byte) ([]byte, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	q, err := echeck.DecodeQuote(rawQuote)
	if err != nil {
		return nil, err
	}
	if err := q.Verify(); err != nil {
		return nil, err
	}
	if !q.MerchantPub.Equal(m.PublicKey()) || q.MerchantAccount != m.account {
		return nil, fmt.Errorf("%w: the quote is another merchant's", echeck.ErrMismatch)
	}
	now := m.now()
	if now.UnixMilli() >= q.ExpiresAt.UnixMilli() {
		return nil, fmt.Errorf("%w: quote expired at %s; ask for a new one", echeck.ErrExpired, q.ExpiresAt.UTC().Format(time.RFC3339))
	}
	p, ok := m.cat.Product(q.ProductID)
	if !ok {
		return nil, fmt.Errorf("%w: %q is no longer sold", ErrNoProduct, q.ProductID)
	}
	goods, err := p.goods()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	serial, err := m.reserveSerial()
	if err != nil {
		return nil, err
	}
	id := echeck.NewEPOID(m.account, now, serial)
	d, key, err := echeck.NewDelivery(rand.Reader, id, q.TID, goods)
	if err != nil {
		return nil, err
	}
	s := &sale{
		Kind: echeck.KindGoods, EPOID: id, ProductID: q.ProductID, Price: q.Price, Quote: rawQuote,
		Key: key, GoodsHash: d.GoodsHash, KeyCommit: d.KeyCommit, Delivered: id.Timestamp,
	}
	if err := m.storeSale(s); err != nil {
		return nil, err
	}
	m.log.Debug("goods delivered", "epoid", id.String(), "product", q.ProductID, "price", q.Price.String(), "bytes", len(goods))
	return d.Encode(), nil
}

// CheckAnswer is the bank's verified answer to a forwarded payment order.
type CheckAnswer struct {
	Receipt       *echeck.Receipt
	RawReceipt    []byte // the bank's signed receipt, byte for byte
	CustomerBlock []byte // sealed to the customer; opaque to the merchant
}

// SubmitEPO takes a customer's signed goods EPO (NetBill step 5). It
// verifies the customer's signature; checks that the EPO is exactly what
// the till quoted and delivered under that EPOID (customer, product, price,
// merchant account and key, PRD hash, goods hash, key commitment) and has
// not expired; endorses it with K sealed to the bank, storing the
// endorsement before sending it (step 6); forwards it to the bank, verifies
// the bank's signed receipt (step 7) and stores it, and returns it with the
// customer's block (step 8).
//
// An EPO that comes more than DeliveryTTL after the delivery is refused. A
// re-submitted EPO is forwarded again with the stored endorsement, even
// after it expired (the bank answers a decided EPOID from its record); a
// different EPO under an endorsed EPOID is refused with ErrSaleConflict.
func (m *Merchant) SubmitEPO(ctx context.Context, raw []byte) (*CheckAnswer, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	epo, err := m.decodeEPO(raw, echeck.KindGoods)
	if err != nil {
		return nil, err
	}
	end, err := m.endorse(epo, func(s *sale) error {
		if s == nil {
			return fmt.Errorf("%w: %s was not delivered by this till", ErrNoSale, epo.EPOID)
		}
		if m.now().After(s.Delivered.Add(DeliveryTTL)) {
			return fmt.Errorf("%w: %s was delivered at %s, and is paid for within %s of its delivery only; ask for a new quote",
				echeck.ErrExpired, epo.EPOID, s.Delivered.Format(time.RFC3339), DeliveryTTL)
		}
		return m.checkOffer(epo, s)
	}, nil)
	if err != nil {
		return nil, err
	}
	return m.forward(ctx, epo, end)
}

// WriteCheck deposits a plain signed check (an EPO of kind check: no
// goods): it verifies the customer's signature, that the check pays this
// merchant's account and key under an EPOID of this merchant with a check
// serial (top bit set, echeck.NewCheckEPOID), and that it has not expired;
// endorses it without a key, stores the endorsement, forwards it and
// returns the bank's verified answer. Idempotent like SubmitEPO.
func (m *Merchant) WriteCheck(ctx context.Context, raw []byte) (*CheckAnswer, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	epo, err := m.decodeEPO(raw, echeck.KindCheck)
	if err != nil {
		return nil, err
	}
	if epo.EPOID.Serial < 1<<63 {
		return nil, fmt.Errorf("%w: a check's EPOID serial must have its top bit set (echeck.NewCheckEPOID)", echeck.ErrMismatch)
	}
	end, err := m.endorse(epo, func(s *sale) error {
		if s != nil && s.Kind != echeck.KindCheck {
			return fmt.Errorf("%w: %s is a sale", ErrSaleConflict, epo.EPOID)
		}
		return nil
	}, func() *sale {
		return &sale{Kind: echeck.KindCheck, EPOID: epo.EPOID, ProductID: epo.ProductID, Price: epo.Price, Delivered: m.now()}
	})
	if err != nil {
		return nil, err
	}
	return m.forward(ctx, epo, end)
}

// decodeEPO parses a signed EPO of the given kind, checks the customer's
// signature and that it pays this merchant.
func (m *Merchant) decodeEPO(raw []byte, kind echeck.Kind) (*echeck.SignedEPO, error) {
	if len(raw) > echeck.MaxSignedEPOLen {
		return nil, fmt.Errorf("%w: signed EPO of %d bytes", ecash.ErrMalformed, len(raw))
	}
	epo, err := echeck.DecodeSignedEPO(raw)
	if err != nil {
		return nil, err
	}
	if epo.Kind != kind {
		what := "SubmitEPO takes goods orders; deposit checks with WriteCheck"
		if kind == echeck.KindCheck {
			what = "WriteCheck takes checks; goods orders go to SubmitEPO"
		}
		return nil, fmt.Errorf("%w: a %s EPO: %s", echeck.ErrMismatch, epo.Kind, what)
	}
	if err := epo.VerifyCustomer(); err != nil {
		return nil, err
	}
	if epo.MerchantAccount != m.account || !epo.MerchantPub.Equal(m.PublicKey()) || epo.EPOID.Merchant != m.account {
		return nil, fmt.Errorf("%w: the EPO pays another merchant", echeck.ErrMismatch)
	}
	if epo.Price.Currency != m.currency {
		return nil, fmt.Errorf("%w: %s, the bank holds %s", ecash.ErrCurrencyMismatch, epo.Price.Currency, m.currency)
	}
	return epo, nil
}

// endorse returns the endorsement to send for epo: the stored one if this
// exact EPO was endorsed before, else a new one, stored (synced) first.
// check vets the record (nil if there is none) before a new endorsement;
// fresh makes the record when there is none.
func (m *Merchant) endorse(epo *echeck.SignedEPO, check func(*sale) error, fresh func() *sale) ([]byte, error) {
	m.saleMu.Lock()
	defer m.saleMu.Unlock()
	s, err := m.loadSale(epo.EPOID)
	if errors.Is(err, ErrNoSale) {
		s, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	enc := epo.Encode()
	if s != nil && s.EPO != nil {
		if !bytes.Equal(s.EPO, enc) {
			return nil, fmt.Errorf("%w: %s", ErrSaleConflict, epo.EPOID)
		}
		return s.Endorsement, nil // a re-submission: forward the same endorsement
	}
	if err := check(s); err != nil {
		return nil, err
	}
	now := m.now()
	if err := epo.Validate(now); err != nil {
		return nil, err
	}
	if s == nil {
		s = fresh()
	}
	var key *[32]byte
	memo := "check"
	if epo.Kind == echeck.KindGoods {
		key, memo = &s.Key, "sale of "+s.ProductID
	}
	end, err := echeck.NewEndorsement(epo, m.account, memo, key, m.keySet().HPKEPub, m.key)
	if err != nil {
		return nil, err
	}
	s.EPO, s.Endorsement = enc, end.Encode()
	// The merchant's point of no return: from here the bank may release K.
	// The sale is marked until the bank's answer is stored (tillreconcile.go).
	b := m.db.NewBatch()
	defer b.Close()
	if err := errors.Join(b.Set(saleKey(s.EPOID), s.encode(), nil), b.Set(endorsedKey(s.EPOID), nil, nil)); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	m.tr.Record(now, "signed-epo", enc, epo.EPOID.String())
	m.tr.Record(now, "endorsement", s.Endorsement, epo.EPOID.String())
	return s.Endorsement, nil
}

// checkOffer checks a goods EPO against the till's record of its quote and
// delivery (echeck.EPO.CheckOffer, without the ciphertext, which the till
// does not keep: the goods hash of the delivery stands for it).
func (m *Merchant) checkOffer(epo *echeck.SignedEPO, s *sale) error {
	if s.Kind != echeck.KindGoods || s.Quote == nil {
		return fmt.Errorf("%w: %s is not a sale of goods", echeck.ErrMismatch, epo.EPOID)
	}
	q, err := echeck.DecodeQuote(s.Quote)
	if err != nil {
		return fmt.Errorf("merchant: corrupt sale record: %w", err)
	}
	switch {
	case !epo.Customer.Equal(q.Customer) || epo.ProductID != q.ProductID || epo.Price != q.Price ||
		epo.MerchantAccount != q.MerchantAccount || !epo.MerchantPub.Equal(q.MerchantPub) || epo.PRDHash != q.PRDHash:
		return fmt.Errorf("%w: EPO differs from the quote", echeck.ErrMismatch)
	case !epo.EPOID.Equal(s.EPOID) || epo.GoodsHash != s.GoodsHash || epo.KeyCommit != s.KeyCommit:
		return fmt.Errorf("%w: EPO differs from the delivery", echeck.ErrMismatch)
	}
	return nil
}

// forward sends an endorsement to the bank, verifies the receipt against
// the EPO (signature with the key set's signing key, the EPO it decides, K
// against the commitment) and stores it. A refusal settles the sale
// (settleRefused) and is returned as the bank gave it.
func (m *Merchant) forward(ctx context.Context, epo *echeck.SignedEPO, end []byte) (*CheckAnswer, error) {
	resp, err := m.bank.SubmitCheck(ctx, &pb.SubmitCheckRequest{Endorsement: end})
	if err != nil {
		m.log.Warn("payment order refused or unanswered", "epoid", epo.EPOID.String(), "err", err)
		if bank.Definitive(err) {
			m.settleRefused(ctx, epo, end)
		}
		return nil, err
	}
	r, err := m.verifyReceipt(ctx, resp.Receipt, epo)
	if err != nil {
		return nil, err
	}
	if err := m.recordReceipt(epo.EPOID, resp.Receipt, resp.LogIndex); err != nil {
		return nil, err
	}
	m.tr.Record(m.now(), "epo-receipt", resp.Receipt, epo.EPOID.String())
	m.log.Debug("payment order decided", "epoid", epo.EPOID.String(), "kind", epo.Kind.String(),
		"decision", r.Decision.String(), "reason", r.Reason, "price", epo.Price.String())
	return &CheckAnswer{Receipt: r, RawReceipt: resp.Receipt, CustomerBlock: resp.CustomerBlock}, nil
}

// settleRefused settles a sale whose endorsement end the bank refused
// outright (bank.Definitive). Sending it again would be refused again, for
// ever (anyone can sign a junk check naming any account): so the mark must
// not stay for Reconcile. The refusal recorded nothing, but the
// EPOID may have been decided before (a concurrent or earlier submission),
// so the bank is asked (settleByStatus: its receipt for this EPO is stored
// and recorded in the transcript, as Reconcile's status query does); no
// record reverts the sale (revertSale); an unanswered query, or a record
// of another EPO under this EPOID, keeps the mark.
func (m *Merchant) settleRefused(ctx context.Context, epo *echeck.SignedEPO, end []byte) {
	err := m.settleByStatus(ctx, epo)
	switch {
	case err == nil:
		m.log.Info("payment order refused by the bank, which had decided it: settled from its record", "epoid", epo.EPOID.String())
		return
	case status.Code(err) == codes.NotFound:
		if err = m.revertSale(epo.EPOID, end); err == nil {
			m.log.Info("payment order refused by the bank, which has no record of it: endorsement dropped", "epoid", epo.EPOID.String())
			return
		}
	}
	m.log.Warn("payment order refused; the bank's record of it unknown: kept for Reconcile", "epoid", epo.EPOID.String(), "err", err)
}

// revertSale undoes the endorsement end of sale id, which the bank refused
// and has no record of, in one synced batch: a check's record goes; a sale
// of goods is delivered again, to be paid by a corrected EPO, or goes too
// once past DeliveryTTL (no EPO can pay it, and pruneDeliveries may have
// passed its time already). Nothing is done if the record no longer holds
// end (another EPO endorsed since).
func (m *Merchant) revertSale(id echeck.EPOID, end []byte) error {
	return m.updateSale(id, func(s *sale, b *pebble.Batch) error {
		if s.Receipt != nil || !bytes.Equal(s.Endorsement, end) {
			return nil
		}
		var err error
		if s.Kind == echeck.KindGoods && !m.now().After(s.Delivered.Add(DeliveryTTL)) {
			s.EPO, s.Endorsement = nil, nil
			err = b.Set(saleKey(id), s.encode(), nil)
		} else {
			err = b.Delete(saleKey(id), nil)
		}
		return errors.Join(err, b.Delete(endorsedKey(id), nil))
	})
}

// updateSale runs f on the record of sale id under saleMu, with a batch it
// then commits, synced, if f wrote anything; a sale no longer recorded is
// left alone.
func (m *Merchant) updateSale(id echeck.EPOID, f func(s *sale, b *pebble.Batch) error) error {
	m.saleMu.Lock()
	defer m.saleMu.Unlock()
	s, err := m.loadSale(id)
	if errors.Is(err, ErrNoSale) {
		return nil
	}
	if err != nil {
		return err
	}
	b := m.db.NewBatch()
	defer b.Close()
	if err := f(s, b); err != nil || b.Empty() {
		return err
	}
	return b.Commit(pebble.Sync)
}

// askStatus asks the bank for its record of EPOID id, with a status query
// signed by the merchant key.
func (m *Merchant) askStatus(ctx context.Context, id echeck.EPOID) (*pb.CheckResult, error) {
	q := echeck.NewStatusQuery(id, m.now(), m.key)
	return m.bank.CheckStatus(ctx, &pb.CheckStatusRequest{Query: q.Encode()})
}

// verifyReceipt checks a receipt from the bank: signed by the key set's
// signing key, deciding exactly epo (if given), and on approval of goods
// releasing a K that matches the commitment.
func (m *Merchant) verifyReceipt(ctx context.Context, raw []byte, epo *echeck.SignedEPO) (*echeck.Receipt, error) {
	r, err := echeck.DecodeReceipt(raw)
	if err == nil {
		err = m.verifyBank(ctx, func(ks *ecash.KeySet) error {
			// Receipts of a retired signing key stay valid for their time.
			if err := ks.CheckSigner(r.SignerPub, r.DecidedAt); err != nil {
				return err
			}
			return r.Verify(r.SignerPub)
		})
	}
	if err == nil && epo != nil {
		err = r.CheckEPO(epo)
		if err == nil && r.Decision == echeck.Approved && r.Kind == echeck.KindGoods {
			err = r.CheckKey(epo.KeyCommit)
		}
	}
	if err != nil {
		m.log.Error("bank receipt does not verify", "err", err)
		return nil, fmt.Errorf("%w: %v", ErrBadBankAnswer, err)
	}
	return r, nil
}

// recordReceipt stores the bank's receipt with the sale, once, and the
// index of its audit-log entry the bank gave with it (for VerifyLog), the
// first time the bank gives one.
func (m *Merchant) recordReceipt(id echeck.EPOID, raw []byte, logIndex int64) error {
	return m.updateSale(id, func(s *sale, b *pebble.Batch) error {
		if s.Receipt == nil {
			s.Receipt = raw
			if err := errors.Join(b.Set(saleKey(s.EPOID), s.encode(), nil), b.Delete(endorsedKey(s.EPOID), nil)); err != nil {
				return err
			}
		}
		if logIndex > 0 {
			if _, known, err := m.saleLogIndex(id); err != nil || known {
				return err
			}
			return b.Set(saleLogKey(id), binary.BigEndian.AppendUint64(nil, uint64(logIndex)), nil)
		}
		return nil
	})
}

// Sale states.
const (
	StateDelivered = "delivered" // goods sent, no payment order yet
	StateEndorsed  = "endorsed"  // endorsed and sent to the bank, no answer yet
	StateApproved  = "approved"
	StateDeclined  = "declined"
	StateUnknown   = "unknown" // neither the till nor the bank knows the EPOID
)

// SaleStatus is what the till and the bank know of an EPOID.
type SaleStatus struct {
	EPOID      echeck.EPOID
	Kind       echeck.Kind // 0 if unknown
	ProductID  string
	Price      ecash.Amount
	State      string
	Delivered  time.Time         // zero if the till has no record
	Receipt    *echeck.Receipt   // nil until decided
	RawReceipt []byte            // the bank's signed receipt
	FromBank   bool              // the bank answered the status query
	Local      bool              // the till has a record of the EPOID
	Customer   ed25519.PublicKey // from the receipt or the endorsed EPO
}

// SaleStatus reports an EPOID's state: the till's record, and the bank's
// decision, asked with a status query signed by the merchant key (NetBill
// recovery). A receipt learnt this way is verified and stored, so a till
// that crashed after endorsing catches up. The bank having no record is not
// an error (State then says what the till knows).
func (m *Merchant) SaleStatus(ctx context.Context, id echeck.EPOID) (*SaleStatus, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	st := &SaleStatus{EPOID: id, State: StateUnknown}
	s, err := m.loadSale(id)
	switch {
	case err == nil:
		st.Local, st.Kind, st.ProductID, st.Price, st.Delivered = true, s.Kind, s.ProductID, s.Price, s.Delivered
		st.State = StateDelivered
		if s.Endorsement != nil {
			st.State = StateEndorsed
		}
	case !errors.Is(err, ErrNoSale):
		return nil, err
	}
	var epo *echeck.SignedEPO
	if s != nil && s.EPO != nil {
		if epo, err = echeck.DecodeSignedEPO(s.EPO); err != nil {
			return nil, fmt.Errorf("merchant: corrupt sale record: %w", err)
		}
		st.Customer = epo.Customer
	}
	resp, err := m.askStatus(ctx, id)
	if status.Code(err) == codes.NotFound {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	st.FromBank = true
	r, err := m.verifyReceipt(ctx, resp.Receipt, epo)
	if err != nil {
		return nil, err
	}
	if !r.EPOID.Equal(id) || r.MerchantAccount != m.account {
		return nil, fmt.Errorf("%w: the receipt is for another EPOID", ErrBadBankAnswer)
	}
	if err := m.recordReceipt(id, resp.Receipt, resp.LogIndex); err != nil {
		return nil, err
	}
	if epo != nil && s.Receipt == nil {
		// An endorsed sale this query settled (its mark taken, Reconcile
		// does not send it again): in the transcript, as settleByStatus
		// records one. A receipt held already, or one for an EPO the till
		// never endorsed, is not recorded again.
		m.tr.Record(m.now(), "epo-receipt", resp.Receipt, id.String())
	}
	st.Receipt, st.RawReceipt, st.Customer = r, resp.Receipt, r.Customer
	st.Kind, st.ProductID, st.Price = r.Kind, r.ProductID, r.Price
	st.State = StateDeclined
	if r.Decision == echeck.Approved {
		st.State = StateApproved
	}
	return st, nil
}
