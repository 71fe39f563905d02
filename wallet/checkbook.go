package wallet

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// The checkbook: the customer's half of NetBill (Cox, Tygar, Sirbu 1995),
// paying from the bank account (not with coins) by signed payment orders.
//
// Buy runs the eight steps: price request, the merchant's signed quote, the
// goods encrypted under a key K the merchant commits to, the signed EPO
// (whose payment instructions are sealed to the bank), and the bank's signed
// receipt with K, forwarded by the merchant. The wallet stores the signed
// EPO, the ciphertext and the reply key (synced) before it sends the EPO:
// from then on it may be charged, and it can always get K from the bank by
// a status query (CheckStatus), even if the merchant never answers.

// EPOLifetime is how long a payment order the wallet signs stays cashable.
// After it (and the clock skew) the bank can no longer charge it, so a
// pending order the bank never saw is then known to be dead.
const EPOLifetime = 15 * time.Minute

// Purchase states.
const (
	PurchasePending  = "pending"  // signed and sent; no verified decision yet
	PurchaseApproved = "approved" // the bank approved: paid (and for goods, K released)
	PurchaseDeclined = "declined" // the bank declined: nothing paid
	PurchaseExpired  = "expired"  // never decided and now too late to be: nothing paid
)

// Errors of the checkbook.
var (
	ErrPriceTooHigh = errors.New("wallet: the merchant's price is above the most you agreed to pay")
	ErrBadOffer     = errors.New("wallet: the merchant's quote or delivery does not verify")
	ErrNoPurchase   = errors.New("wallet: no purchase or check under this EPOID in the wallet")
	// ErrNoConfirm: Buy was given neither a confirm callback nor a most
	// price, so nothing would check the price the merchant's quote names.
	ErrNoConfirm = errors.New("wallet: a purchase needs a confirm callback or a most price to check the merchant's quote")
)

// DeclinedError is the bank's signed refusal of a payment order: nothing was
// paid. Receipt is the signed decline.
type DeclinedError struct {
	EPOID   echeck.EPOID
	Reason  string
	Receipt *echeck.Receipt
}

func (e *DeclinedError) Error() string {
	return fmt.Sprintf("wallet: the bank declined payment order %s: %s", e.EPOID, e.Reason)
}

// MerchantFaultError: the bank approved and charged, but the released K does
// not open the goods the customer signed for. Verdict is echeck.Judge's
// finding from the signed records (receipt, EPO, ciphertext), which the
// wallet keeps as evidence for a refund.
type MerchantFaultError struct {
	EPOID   echeck.EPOID
	Verdict echeck.Verdict
}

func (e *MerchantFaultError) Error() string {
	return fmt.Sprintf("wallet: payment order %s was charged but the goods do not open (%s); the wallet keeps the signed records as evidence", e.EPOID, e.Verdict)
}

// Purchase is a payment order the wallet signed (goods or a plain check) and
// what is known of it.
type Purchase struct {
	EPOID           echeck.EPOID
	Kind            echeck.Kind
	ProductID       string // a check's reference
	Price           ecash.Amount
	MerchantAccount uint64
	Memo            string
	Created         time.Time
	ExpiresAt       time.Time
	State           string                // one of the Purchase* states
	Receipt         *echeck.Receipt       // the bank's signed decision, once known
	Goods           []byte                // the decrypted goods (approved goods)
	Block           *echeck.CustomerBlock // the bank's customer-only block, if one opened
	EPO             *echeck.SignedEPO     // what the customer signed
}

// purchaseRecord is what the wallet keeps per payment order ("e/" key); the
// ciphertext of goods lies beside it ("g/" key).
type purchaseRecord struct {
	Kind     echeck.Kind
	Quote    []byte // the merchant's signed quote (goods)
	EPO      []byte // the signed EPO, exactly as sent
	ReplyKey []byte // X25519 private key the customer block is sealed to
	Memo     string
	Created  time.Time
	State    string
	Receipt  []byte // the bank's signed receipt, once verified
	Block    []byte // the sealed customer block that came with it
}

func (r *purchaseRecord) encode() []byte {
	e := ecash.NewEncoder("wallet/purchase")
	e.U8(uint8(r.Kind))
	e.VarBytes(r.Quote)
	e.VarBytes(r.EPO)
	e.VarBytes(r.ReplyKey)
	e.String(r.Memo)
	e.I64(r.Created.UnixMilli())
	e.String(r.State)
	e.VarBytes(r.Receipt)
	e.VarBytes(r.Block)
	return e.Bytes()
}

func decodePurchaseRecord(b []byte) (*purchaseRecord, error) {
	d := ecash.NewDecoder("wallet/purchase", b)
	r := &purchaseRecord{Kind: echeck.Kind(d.U8())}
	r.Quote = d.VarBytes(ecash.MaxFieldLen)
	r.EPO = d.VarBytes(echeck.MaxSignedEPOLen)
	r.ReplyKey = d.VarBytes(32)
	r.Memo = d.String()
	r.Created = time.UnixMilli(d.I64()).UTC()
	r.State = d.String()
	r.Receipt = d.VarBytes(ecash.MaxFieldLen)
	r.Block = d.VarBytes(ecash.MaxFieldLen)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("wallet: corrupt purchase record: %w", err)
	}
	return r, nil
}

func purchaseKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append([]byte("e/"), k[:]...)
}

func goodsKey(id echeck.EPOID) []byte {
	k := id.Key()
	return append([]byte("g/"), k[:]...)
}

// ConfirmQuote decides whether to buy at a merchant's quote, once its
// signature, its answer to the price request and its currency are verified;
// return nil to buy. The product list the merchant serves is not signed:
// the quote's price is the one that is charged.
type ConfirmQuote func(*echeck.Quote) error

// Buy buys product productID from a merchant's till by electronic check,
// running NetBill's eight steps as the customer:
//
//  1. a price request with the wallet's account key as identity and a
//     fresh TID;
//  2. the merchant's quote: its signature, that it answers this request,
//     its expiry, the bank's currency, maxPrice if given, then confirm if
//     given (it sees the verified quote; an error from it ends the purchase
//     before anything is signed, stored or sent past the price request);
//  3. 4. the goods request and the delivery: the ciphertext's hash, the TID
//     and the merchant's EPOID;
//  5. the EPO (echeck.NewGoodsEPO) with its private part (account, memo, a
//     fresh X25519 reply key) sealed to the bank, signed by the account key,
//     and stored with the ciphertext and the reply key (synced) before it is
//     sent: the customer's point of no return;
//  6. 7. 8. the merchant endorses and forwards it; the wallet verifies the
//     bank's receipt with the signing key of the stored key set, checks K
//     against the commitment, decrypts the goods, stores the receipt, and
//     opens its customer-only block (the new balance).
//
// If the merchant fails or answers with anything that does not verify, the
// wallet asks the bank directly (CheckStatus). A decline returns the
// purchase and a *DeclinedError with the bank's signed reason; an order sent
// but not yet decided returns the purchase and an error wrapping ErrPending:
// run CheckStatus with its EPOID later.
//
// At least one of maxPrice and confirm must be given, or Buy returns
// ErrNoConfirm before contacting anyone: the merchant's quote names the price.
func (w *Wallet) Buy(ctx context.Context, bank pb.BankClient, merchant pb.MerchantClient, productID string, maxPrice *ecash.Amount, memo string, confirm ConfirmQuote) (*Purchase, error) {
	if maxPrice == nil && confirm == nil {
		return nil, ErrNoConfirm
	}
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	acct, err := w.Account()
	if err != nil {
		return nil, err
	}
	if maxPrice != nil && maxPrice.Currency != ks.Currency {
		return nil, fmt.Errorf("%w: most price in %s, the bank holds %s", ecash.ErrCurrencyMismatch, maxPrice.Currency, ks.Currency)
	}
	if len(memo) > echeck.MaxMemoLen {
		return nil, fmt.Errorf("%w: memo of %d bytes; at most %d", ecash.ErrMalformed, len(memo), echeck.MaxMemoLen)
	}
	if productID == "" || len(productID) > echeck.MaxProductIDLen {
		return nil, fmt.Errorf("%w: product id must be 1 to %d bytes", ecash.ErrMalformed, echeck.MaxProductIDLen)
	}

	// Steps 1-2: price request and quote.
	req := &echeck.PriceRequest{Customer: w.AccountKey(), ProductID: productID, Bid: ecash.Amount{Currency: ks.Currency}}
	if _, err := rand.Read(req.TID[:]); err != nil {
		return nil, err
	}
	qresp, err := merchant.Quote(ctx, &pb.QuoteRequest{PriceRequest: req.Encode()})
	if err != nil {
		return nil, err
	}
	q, err := echeck.DecodeQuote(qresp.Quote)
	if err == nil {
		err = q.Verify()
	}
	if err == nil {
		err = q.CheckRequest(req, w.now())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: quote: %v", ErrBadOffer, err)
	}
	w.tr.Record(w.now(), "quote", qresp.Quote, productID)
	if q.Price.Currency != ks.Currency {
		return nil, fmt.Errorf("%w: price %s, the bank holds %s", ecash.ErrCurrencyMismatch, q.Price, ks.Currency)
	}
	if maxPrice != nil {
		if c, err := q.Price.Cmp(*maxPrice); err != nil || c > 0 {
			return nil, fmt.Errorf("%w: %s costs %s, at most %s agreed", ErrPriceTooHigh, productID, q.Price, maxPrice)
		}
	}
	if confirm != nil {
		if err := confirm(q); err != nil {
			return nil, err
		}
	}

	// Steps 3-4: goods request and encrypted goods.
	gresp, err := merchant.GetGoods(ctx, &pb.GetGoodsRequest{Quote: qresp.Quote})
	if err != nil {
		return nil, err
	}
	d, err := echeck.DecodeDelivery(gresp.Delivery)
	if err == nil {
		err = d.Check()
	}
	if err == nil && (d.TID != req.TID || d.EPOID.Merchant != q.MerchantAccount) {
		err = fmt.Errorf("%w: delivery answers another quote", echeck.ErrMismatch)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: delivery: %v", ErrBadOffer, err)
	}

	// Step 5: the signed payment order, stored before it leaves.
	now := w.now()
	start := now
	if d.EPOID.Timestamp.After(start) {
		start = d.EPOID.Timestamp
	}
	epo := echeck.NewGoodsEPO(w.AccountKey(), q, d, start.Add(EPOLifetime))
	if err := epo.Validate(now); err != nil {
		return nil, fmt.Errorf("%w: delivery: %v", ErrBadOffer, err)
	}
	rec, err := w.signEPO(ks, epo, acct, memo, qresp.Quote, d.Ciphertext)
	if err != nil {
		return nil, err
	}
	resp, err := merchant.SubmitEPO(ctx, &pb.SubmitEPORequest{SignedEpo: rec.EPO})
	return w.settleEPO(ctx, bank, ks, epo.EPOID, rec, d.Ciphertext, resp, err)
}

// WriteCheck writes a plain signed check for amount to the merchant's
// account (an EPO of kind check: no goods, EPOID from
// echeck.NewCheckEPOID), stores it, and hands it to the merchant, who
// endorses and deposits it. The merchant's account and key come from its
// till (ListProducts). memo travels in the private part: only the bank and
// the statements see it. Outcomes are as for Buy.
func (w *Wallet) WriteCheck(ctx context.Context, bank pb.BankClient, merchant pb.MerchantClient, amount ecash.Amount, memo string) (*Purchase, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	acct, err := w.Account()
	if err != nil {
		return nil, err
	}
	if amount.Currency != ks.Currency {
		return nil, fmt.Errorf("%w: %s, the bank holds %s", ecash.ErrCurrencyMismatch, amount.Currency, ks.Currency)
	}
	if amount.IsZero() || amount.Validate() != nil {
		return nil, fmt.Errorf("%w: %s", ecash.ErrBadAmount, amount)
	}
	if len(memo) > echeck.MaxMemoLen {
		return nil, fmt.Errorf("%w: memo of %d bytes; at most %d", ecash.ErrMalformed, len(memo), echeck.MaxMemoLen)
	}
	info, err := merchant.ListProducts(ctx, &pb.ListProductsRequest{})
	if err != nil {
		return nil, err
	}
	if err := ecash.CheckEd25519Key(info.MerchantKey); err != nil || info.MerchantAccount == 0 {
		return nil, fmt.Errorf("%w: the merchant names no usable account and key", ErrBadOffer)
	}
	now := w.now()
	id, err := echeck.NewCheckEPOID(rand.Reader, info.MerchantAccount, now)
	if err != nil {
		return nil, err
	}
	epo := echeck.EPO{
		Kind: echeck.KindCheck, Customer: w.AccountKey(), Price: amount,
		MerchantAccount: info.MerchantAccount, MerchantPub: ed25519.PublicKey(info.MerchantKey),
		EPOID: id, ExpiresAt: id.Timestamp.Add(EPOLifetime),
	}
	rec, err := w.signEPO(ks, epo, acct, memo, nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := merchant.WriteCheck(ctx, &pb.SubmitEPORequest{SignedEpo: rec.EPO})
	return w.settleEPO(ctx, bank, ks, id, rec, nil, resp, err)
}

// signEPO seals the private part, signs the order with the account key and
// stores it, the fresh reply key and the ciphertext in one synced batch.
func (w *Wallet) signEPO(ks *ecash.KeySet, epo echeck.EPO, acct uint64, memo string, quote, ciphertext []byte) (*purchaseRecord, error) {
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	priv := echeck.EPOPrivate{Account: acct, Memo: memo}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	if _, err := rand.Read(priv.Nonce[:]); err != nil {
		return nil, err
	}
	signed, err := echeck.NewSignedEPO(epo, priv, ks.HPKEPub, w.acctKey)
	if err != nil {
		return nil, err
	}
	rec := &purchaseRecord{
		Kind: epo.Kind, Quote: quote, EPO: signed.Encode(), ReplyKey: reply.Bytes(),
		Memo: memo, Created: w.now(), State: PurchasePending,
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, err := get(w.db, purchaseKey(epo.EPOID)); err != nil {
		return nil, err
	} else if old != nil {
		return nil, fmt.Errorf("%w: EPOID %s is already in the wallet", ErrBadOffer, epo.EPOID)
	}
	b := w.db.NewBatch()
	defer b.Close()
	if ciphertext != nil {
		if err := b.Set(goodsKey(epo.EPOID), ciphertext, nil); err != nil {
			return nil, err
		}
	}
	if err := b.Set(purchaseKey(epo.EPOID), rec.encode(), nil); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	w.tr.Record(w.now(), "signed-epo", rec.EPO, epo.EPOID.String())
	return rec, nil
}

// settleEPO takes the merchant's answer to a sent EPO; if there is none, or
// it does not verify, it asks the bank.
func (w *Wallet) settleEPO(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, id echeck.EPOID, rec *purchaseRecord, ciphertext []byte, resp *pb.SubmitEPOResponse, sendErr error) (*Purchase, error) {
	if sendErr == nil {
		p, err := w.accept(ctx, bank, ks, id, rec, ciphertext, resp.Receipt, resp.CustomerBlock)
		if err == nil || isVerdict(err) {
			return p, err
		}
		sendErr = fmt.Errorf("the merchant's answer: %w", err)
	}
	p, err := w.CheckStatus(ctx, bank, id)
	if err == nil || isVerdict(err) {
		return p, err
	}
	if p == nil {
		var perr error
		if p, perr = w.Purchase(id); perr != nil {
			return nil, perr
		}
	}
	return p, fmt.Errorf("%w: payment order %s was sent but not confirmed (%v); asking the bank: %v", ErrPending, id, sendErr, err)
}

// isVerdict reports whether err is a verified outcome rather than a failure
// to learn one.
func isVerdict(err error) bool {
	var de *DeclinedError
	var mf *MerchantFaultError
	return errors.As(err, &de) || errors.As(err, &mf)
}

// CheckStatus asks the bank for the decision on a payment order the wallet
// signed, with a status query signed by the account key (NetBill recovery):
// the way to get K when the merchant never forwarded it. It verifies the
// receipt as Buy does, decrypts the stored goods, stores the receipt and
// opens the customer block. If the bank has no decision: an order past its
// expiry (and the clock skew) can no longer be charged and is marked
// expired; otherwise the error wraps ErrPending.
func (w *Wallet) CheckStatus(ctx context.Context, bank pb.BankClient, id echeck.EPOID) (*Purchase, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	rec, ct, err := w.loadPurchase(id)
	if err != nil {
		return nil, err
	}
	q := echeck.NewStatusQuery(id, w.now(), w.acctKey)
	resp, err := bank.CheckStatus(ctx, &pb.CheckStatusRequest{Query: q.Encode()})
	if status.Code(err) == codes.NotFound {
		p, perr := w.purchase(ks, id, rec, ct)
		if perr != nil {
			return nil, perr
		}
		if rec.State == PurchasePending && w.now().After(p.ExpiresAt.Add(2*ecash.MaxClockSkew)) {
			rec.State = PurchaseExpired
			if err := w.storePurchase(id, rec); err != nil {
				return nil, err
			}
			p.State = PurchaseExpired
			return p, nil
		}
		if rec.State != PurchasePending {
			// Decided (the bank's signed receipt is stored) or expired: the
			// bank forgetting it changes neither.
			return p, nil
		}
		return p, fmt.Errorf("%w: the bank has no decision on payment order %s yet (it stays chargeable until %s)", ErrPending, id, p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return nil, err
	}
	return w.accept(ctx, bank, ks, id, rec, ct, resp.Receipt, resp.CustomerBlock)
}

// accept verifies a receipt for a stored order (the bank's signature with
// the stored key set's signing key, that it decides exactly this EPO, K
// against the commitment), decrypts the goods, opens the customer block and
// stores the outcome.
func (w *Wallet) accept(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, id echeck.EPOID, rec *purchaseRecord, ciphertext, rawReceipt, block []byte) (*Purchase, error) {
	epo, err := echeck.DecodeSignedEPO(rec.EPO)
	if err != nil {
		return nil, fmt.Errorf("wallet: corrupt purchase record: %w", err)
	}
	r, err := echeck.DecodeReceipt(rawReceipt)
	var signer ed25519.PublicKey
	if err == nil {
		// The key that signed it, if the key set lists it for that time:
		// receipts of a retired signing key stay valid.
		if err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return ks.CheckSigner(r.SignerPub, r.DecidedAt) }); err == nil {
			signer = r.SignerPub
			err = r.Verify(signer)
		}
	}
	if err == nil {
		err = r.CheckEPO(epo)
	}
	if err != nil {
		return nil, fmt.Errorf("the receipt: %w", err)
	}
	if rec.Receipt != nil && !bytes.Equal(rec.Receipt, rawReceipt) {
		// One outcome per EPOID: two different signed receipts are evidence
		// against the bank; keep the first.
		return nil, fmt.Errorf("%w: the bank signed two different receipts for %s", echeck.ErrMismatch, id)
	}
	var goods []byte
	var fault *MerchantFaultError
	if r.Decision == echeck.Approved && r.Kind == echeck.KindGoods {
		if goods, err = r.OpenGoods(signer, epo, ciphertext); err != nil {
			v := echeck.Judge(r, epo, ciphertext, signer)
			if v.Outcome != echeck.MerchantFault {
				return nil, fmt.Errorf("the receipt: %w", err)
			}
			fault = &MerchantFaultError{EPOID: id, Verdict: v}
		}
	}
	rec.Receipt = rawReceipt
	rec.State = PurchaseDeclined
	if r.Decision == echeck.Approved {
		rec.State = PurchaseApproved
	}
	if len(block) > 0 {
		if b, err := w.openBlock(rec, r, block); err == nil && b.EPOID.Equal(id) {
			rec.Block = block
		}
	}
	if err := w.storePurchase(id, rec); err != nil {
		return nil, err
	}
	// The decision is due for checking in the bank's audit log.
	kind := uint8(logEPODeclined)
	if r.Decision == echeck.Approved {
		kind = logEPOApproved
	}
	check := &logCheck{Kind: kind, Answered: r.DecidedAt.UnixMilli(), Asked: epo.EPOID.Timestamp.UnixMilli()}
	if err := w.db.Set(logCheckKey(epo.Hash()), check.encode(), pebble.Sync); err != nil {
		return nil, err
	}
	w.tr.Record(w.now(), "epo-receipt", rawReceipt, id.String())
	p, err := w.purchase(ks, id, rec, nil)
	if err != nil {
		return nil, err
	}
	p.Goods = goods
	switch {
	case fault != nil:
		return p, fault
	case r.Decision == echeck.Declined:
		return p, &DeclinedError{EPOID: id, Reason: r.Reason, Receipt: r}
	}
	return p, nil
}

func (w *Wallet) openBlock(rec *purchaseRecord, r *echeck.Receipt, sealed []byte) (*echeck.CustomerBlock, error) {
	k, err := ecdh.X25519().NewPrivateKey(rec.ReplyKey)
	if err != nil {
		return nil, err
	}
	return echeck.OpenCustomerBlock(k, r.Hash(), sealed)
}

func (w *Wallet) storePurchase(id echeck.EPOID, rec *purchaseRecord) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.db.Set(purchaseKey(id), rec.encode(), pebble.Sync)
}

func (w *Wallet) loadPurchase(id echeck.EPOID) (*purchaseRecord, []byte, error) {
	raw, err := get(w.db, purchaseKey(id))
	if err != nil {
		return nil, nil, err
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoPurchase, id)
	}
	rec, err := decodePurchaseRecord(raw)
	if err != nil {
		return nil, nil, err
	}
	ct, err := get(w.db, goodsKey(id))
	if err != nil {
		return nil, nil, err
	}
	return rec, ct, nil
}

// Purchase returns a payment order from the wallet's records, with the goods
// decrypted if it was approved. It works offline.
func (w *Wallet) Purchase(id echeck.EPOID) (*Purchase, error) {
	ks, err := w.KeySet()
	if err != nil {
		return nil, err
	}
	rec, ct, err := w.loadPurchase(id)
	if err != nil {
		return nil, err
	}
	return w.purchase(ks, id, rec, ct)
}

// purchase builds the Purchase view of a record; with the ciphertext, it
// decrypts approved goods.
func (w *Wallet) purchase(ks *ecash.KeySet, id echeck.EPOID, rec *purchaseRecord, ciphertext []byte) (*Purchase, error) {
	epo, err := echeck.DecodeSignedEPO(rec.EPO)
	if err != nil {
		return nil, fmt.Errorf("wallet: corrupt purchase record: %w", err)
	}
	p := &Purchase{
		EPOID: id, Kind: epo.Kind, ProductID: epo.ProductID, Price: epo.Price, MerchantAccount: epo.MerchantAccount,
		Memo: rec.Memo, Created: rec.Created, ExpiresAt: epo.ExpiresAt, State: rec.State, EPO: epo,
	}
	if rec.Receipt == nil {
		return p, nil
	}
	if p.Receipt, err = echeck.DecodeReceipt(rec.Receipt); err != nil {
		return nil, fmt.Errorf("wallet: corrupt purchase record: %w", err)
	}
	if rec.Block != nil {
		if b, err := w.openBlock(rec, p.Receipt, rec.Block); err == nil {
			p.Block = b
		}
	}
	if ciphertext != nil && p.Receipt.Decision == echeck.Approved && p.Kind == echeck.KindGoods {
		if g, err := p.Receipt.OpenGoods(p.Receipt.SignerPub, epo, ciphertext); err == nil {
			p.Goods = g
		}
	}
	return p, nil
}

// Purchases lists the wallet's payment orders (without goods), oldest EPOID
// first within each merchant.
func (w *Wallet) Purchases() ([]*Purchase, error) {
	ks, err := w.KeySet()
	if err != nil {
		return nil, err
	}
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("e/"), UpperBound: prefixEnd([]byte("e/"))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*Purchase
	for it.First(); it.Valid(); it.Next() {
		rec, err := decodePurchaseRecord(it.Value())
		if err != nil {
			return nil, err
		}
		epo, err := echeck.DecodeSignedEPO(rec.EPO)
		if err != nil {
			return nil, fmt.Errorf("wallet: corrupt purchase record: %w", err)
		}
		p, err := w.purchase(ks, epo.EPOID, rec, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, it.Error()
}

// Statement asks the bank for the signed statement of the wallet's account
// over [from, to), with a request signed by the account key, and verifies
// it: the bank's signing key from the stored key set (fetched again if the
// statement names another: verifyBank), the account and the
// period asked for, and the running balances (echeck.Statement.Verify).
func (w *Wallet) Statement(ctx context.Context, bank pb.BankClient, from, to time.Time) (*echeck.Statement, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	acct, err := w.Account()
	if err != nil {
		return nil, err
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: the statement period ends before it starts", ecash.ErrMalformed)
	}
	req := echeck.NewStatementRequest(acct, from, to, w.now(), w.acctKey)
	resp, err := bank.GetStatement(ctx, &pb.GetStatementRequest{Request: req.Encode()})
	if err != nil {
		return nil, err
	}
	st, err := echeck.DecodeStatement(resp.Statement)
	if err == nil {
		// The current signing key: a statement is signed when asked for.
		err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return st.Verify(ks.SigningPub) })
	}
	if err == nil && (st.Account != acct || st.Currency != ks.Currency ||
		st.From.UnixMilli() != from.UnixMilli() || st.To.UnixMilli() != to.UnixMilli()) {
		err = fmt.Errorf("%w: the statement is for another account or period", echeck.ErrMismatch)
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: the bank's statement: %w", err)
	}
	return st, nil
}
