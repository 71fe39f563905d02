package auditcmd

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// The NetBill steps (docs/PROTOCOL.md §9): a checkbook (wallet) records
// quote, signed-epo and epo-receipt; a till (merchant) records
// price-request, quote, signed-epo, endorsement and epo-receipt. A
// delivery, if recorded, lets the audit run the judge.

type priceReqInfo struct {
	line int
	r    *echeck.PriceRequest
}

type quoteInfo struct {
	line int
	q    *echeck.Quote
}

type epoInfo struct {
	line int
	epo  *echeck.SignedEPO
	hash ecash.Hash
}

type epoReceiptInfo struct {
	line int
	raw  []byte
}

type deliveryInfo struct {
	line int
	d    *echeck.Delivery
}

// checkNote requires the note to be what the writers put there.
func checkNote(c *lineCtx, want, what string) error {
	if c.rec.Note != want {
		return failf("the note %q is not the %s %q", c.rec.Note, what, want)
	}
	return nil
}

func (s *partyState) priceRequest(c *lineCtx) error {
	r, err := echeck.DecodePriceRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if err := checkNote(c, r.ProductID, "product id"); err != nil {
		return err
	}
	if err := ecash.CheckEd25519Key(r.Customer); err != nil {
		return failf("customer key: %v", err)
	}
	s.priceReqs[r.TID] = &priceReqInfo{line: c.n, r: r}
	c.summaryf("customer %s asks the price of %q (TID %s)", short(r.Customer), r.ProductID, short(r.TID[:]))
	return nil
}

func (s *partyState) quote(c *lineCtx) error {
	q, err := echeck.DecodeQuote(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, q.Encode()); err != nil {
		return err
	}
	if err := checkNote(c, q.ProductID, "product id"); err != nil {
		return err
	}
	if err := q.Verify(); err != nil {
		return failf("the merchant's signature: %v", err)
	}
	if pr := s.priceReqs[q.TID]; pr != nil {
		r := pr.r
		if !q.Customer.Equal(r.Customer) || q.ProductID != r.ProductID || q.PRDHash != r.PRDHash() {
			return failf("the quote answers another price request than the one of line %d (same TID)", pr.line)
		}
	} else if !s.isWallet() {
		return failf("no price request with TID %s precedes this quote (a till records the request with its quote)", short(q.TID[:]))
	} else {
		c.unverified("a checkbook does not record its price request: that a quote answers it is not checked")
	}
	if q.Price.Currency != c.v.keys.Currency() {
		c.unverified("a quote in another currency than the bank's, which the checkbook refuses")
	}
	s.quotes = append(s.quotes, &quoteInfo{line: c.n, q: q})
	c.summaryf("merchant signature verified: %q for %s from account %d, until %s", q.ProductID, q.Price, q.MerchantAccount, stamp(q.ExpiresAt))
	return nil
}

func (s *partyState) delivery(c *lineCtx) error {
	d, err := echeck.DecodeDelivery(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, d.Encode()); err != nil {
		return err
	}
	if err := d.Check(); err != nil {
		return err
	}
	key := d.EPOID.Key()
	for _, e := range s.epos[key] {
		if e.epo.GoodsHash != d.GoodsHash || e.epo.KeyCommit != d.KeyCommit {
			return failf("the EPO of line %d for %s names another goods hash or key commitment", e.line, d.EPOID)
		}
	}
	s.deliveries[key] = &deliveryInfo{line: c.n, d: d}
	c.summaryf("EPOID %s: %d bytes of encrypted goods, goods hash checked", d.EPOID, len(d.Ciphertext))
	return nil
}

func (s *partyState) signedEPO(c *lineCtx) error {
	e, err := echeck.DecodeSignedEPO(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, e.Encode()); err != nil {
		return err
	}
	if err := checkNote(c, e.EPOID.String(), "EPOID"); err != nil {
		return err
	}
	if err := e.VerifyCustomer(); err != nil {
		return failf("the customer's signature: %v", err)
	}
	if err := ecash.CheckEd25519Key(e.MerchantPub); err != nil {
		return failf("merchant key: %v", err)
	}
	if e.Price.Currency != c.v.keys.Currency() {
		return failf("the EPO is in %s; the bank holds %s", e.Price.Currency, c.v.keys.Currency())
	}
	if e.EPOID.Merchant != e.MerchantAccount {
		return failf("EPOID %s is not of the merchant the EPO pays (account %d)", e.EPOID, e.MerchantAccount)
	}
	h := e.Hash()
	if line, ok := s.decided[h]; ok {
		return failf("the EPO is recorded after the bank's receipt deciding it (line %d): nothing can charge a customer before it signs", line)
	}
	switch e.Kind {
	case echeck.KindCheck:
		if e.EPOID.Serial < 1<<63 {
			return failf("a check's EPOID serial must have its top bit set")
		}
		c.summaryf("customer signature verified: a check for %s to account %d", e.Price, e.MerchantAccount)
	case echeck.KindGoods:
		var q *quoteInfo
		for i := len(s.quotes) - 1; i >= 0; i-- {
			x := s.quotes[i].q
			if x.Customer.Equal(e.Customer) && x.ProductID == e.ProductID && x.Price == e.Price &&
				x.MerchantAccount == e.MerchantAccount && x.MerchantPub.Equal(e.MerchantPub) && x.PRDHash == e.PRDHash {
				q = s.quotes[i]
				break
			}
		}
		if q == nil {
			if err := c.missing("the quote a goods EPO accepts is not in this transcript"); err != nil {
				return err
			}
		} else if e.EPOID.Timestamp.UnixMilli() >= q.q.ExpiresAt.UnixMilli() {
			return failf("the goods were delivered (EPOID %s) after the quote of line %d expired", e.EPOID, q.line)
		}
		if d := s.deliveries[e.EPOID.Key()]; d != nil && (d.d.GoodsHash != e.GoodsHash || d.d.KeyCommit != e.KeyCommit) {
			return failf("the EPO signs another goods hash or key commitment than the delivery of line %d", d.line)
		}
		what := fmt.Sprintf("customer signature verified: %q for %s", e.ProductID, e.Price)
		if q != nil {
			what += fmt.Sprintf(", as quoted at line %d", q.line)
		}
		c.summaryf("%s", what)
	}
	c.unverified("an EPO's private part (account, memo, authorisation) is sealed to the bank's HPKE key: only the bank can open it")
	s.epos[e.EPOID.Key()] = append(s.epos[e.EPOID.Key()], &epoInfo{line: c.n, epo: e, hash: h})
	return nil
}

func (s *partyState) endorsement(c *lineCtx) error {
	// A transcript records an endorsement the till already signed and
	// sent: its memo is held to the rule it was signed under, as the bank
	// holds its own copy (an older till's may carry control characters).
	// The signature still covers exactly these bytes (canonical, below).
	end, err := echeck.DecodeRecordedEndorsement(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, end.Encode()); err != nil {
		return err
	}
	epo, err := echeck.DecodeSignedEPO(end.EPO)
	if err != nil {
		return err
	}
	if err := checkNote(c, epo.EPOID.String(), "EPOID"); err != nil {
		return err
	}
	if s.isWallet() {
		return failf("an endorsement in a wallet's transcript: only the merchant endorses")
	}
	if _, err := end.VerifyRecorded(epo.MerchantPub); err != nil {
		return failf("the endorsement does not verify: %v", err)
	}
	h := end.EPOHash()
	var signed *epoInfo
	for _, e := range s.epos[epo.EPOID.Key()] {
		if e.hash == h {
			signed = e
		}
	}
	if signed == nil {
		if prev := s.epos[epo.EPOID.Key()]; len(prev) > 0 {
			return failf("the merchant endorses another EPO than the one the customer signed (line %d)", prev[len(prev)-1].line)
		}
		return failf("no EPO signed by the customer precedes this endorsement (a till records it with its endorsement)")
	}
	if line, ok := s.decided[h]; ok {
		return failf("the endorsement is recorded after the bank's receipt deciding its EPO (line %d): before the merchant endorses, the bank can neither release K nor credit it", line)
	}
	s.endorsed[h] = c.n
	if epo.Kind == echeck.KindGoods {
		c.unverified("the goods key K in an endorsement is sealed to the bank's HPKE key: only the bank checks it against the commitment, and its receipt shows the outcome")
	}
	c.summaryf("merchant and customer signatures verified: the merchant endorses, byte for byte, the EPO of line %d", signed.line)
	if ecash.CheckText(end.Memo, echeck.MaxMemoLen, "memo") != nil {
		c.summaryf("its memo holds characters a display hides, allowed by the earlier rule the bank followed before 2026-11-27: it refuses such an endorsement now")
	}
	return nil
}

func (s *partyState) epoReceipt(c *lineCtx) error {
	r, err := echeck.DecodeReceipt(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if err := checkNote(c, r.EPOID.String(), "EPOID"); err != nil {
		return err
	}
	if err := c.v.keys.verify(func(ks *ecash.KeySet) error { return ks.CheckSigner(r.SignerPub, r.DecidedAt) }); err != nil {
		return failf("the bank's signature: %v", err)
	}
	if err := r.Verify(r.SignerPub); err != nil { // structure and signature, under the key just vetted
		return failf("the bank's signature: %v", err)
	}
	key := r.EPOID.Key()
	if prev := s.epoReceipts[key]; prev != nil {
		if !bytes.Equal(prev.raw, c.rec.data) {
			return failf("the bank signed two different outcomes for EPOID %s: line %d and this one", r.EPOID, prev.line)
		}
		c.summaryf("the same receipt as line %d", prev.line)
		return nil
	}
	if r.Decision == echeck.Approved {
		if r.EPOID.Merchant != r.MerchantAccount {
			return failf("approves EPOID %s, which is not of the credited merchant %d", r.EPOID, r.MerchantAccount)
		}
		if r.EPOID.Timestamp.After(r.DecidedAt.Add(ecash.MaxClockSkew)) {
			return failf("approved at %s, before EPOID %s was issued", stamp(r.DecidedAt), r.EPOID)
		}
	}
	var signed *epoInfo
	for _, e := range s.epos[key] {
		if e.hash == r.EPOHash {
			signed = e
		}
	}
	if signed == nil {
		if prev := s.epos[key]; len(prev) > 0 {
			last := prev[len(prev)-1]
			return failf("the receipt decides another EPO than the one the customer signed at line %d: it names EPO hash %s, that EPO hashes to %s",
				last.line, short(r.EPOHash[:]), short(last.hash[:]))
		}
		if err := c.missing("the EPO a receipt decides is not in this transcript"); err != nil {
			return err
		}
	} else {
		e := signed.epo
		if err := r.CheckEPO(e); err != nil {
			return failf("against the EPO of line %d: %v", signed.line, err)
		}
		if !s.isWallet() {
			if _, ok := s.endorsed[signed.hash]; !ok {
				return failf("the bank decided the EPO of line %d, which the merchant never endorsed", signed.line)
			}
		}
		if r.Decision == echeck.Approved && !r.DecidedAt.Before(e.ExpiresAt) {
			return failf("approved at %s, after the EPO of line %d expired at %s", stamp(r.DecidedAt), signed.line, stamp(e.ExpiresAt))
		}
		if r.Decision == echeck.Approved && e.Kind == echeck.KindGoods {
			if err := r.CheckKey(e.KeyCommit); err != nil {
				return failf("the released goods key does not match the commitment the customer signed at line %d: %v", signed.line, err)
			}
		}
		s.decided[signed.hash] = c.n
	}
	s.decided[r.EPOHash] = c.n
	s.epoReceipts[key] = &epoReceiptInfo{line: c.n, raw: c.rec.data}

	what := fmt.Sprintf("bank signature verified: EPOID %s %s", r.EPOID, r.Decision)
	if r.Decision == echeck.Declined {
		what += fmt.Sprintf(" (%s); no key, no money moved", cli.Shown(r.Reason))
	} else {
		what += fmt.Sprintf(": %s from the customer to account %d", r.Price, r.MerchantAccount)
	}
	if signed != nil {
		what += fmt.Sprintf("; it decides the EPO of line %d", signed.line)
		if r.Decision == echeck.Approved && r.Kind == echeck.KindGoods {
			what += ", and K matches the key commitment the customer signed"
		}
	}
	c.summaryf("%s", what)
	if r.Decision == echeck.Approved && r.Kind == echeck.KindGoods {
		d := s.deliveries[key]
		switch {
		case d == nil:
			c.unverified("the goods ciphertext is not recorded: that K opens it (the judge's last rule) is not checked")
		case signed != nil:
			v := echeck.Judge(r, signed.epo, d.d.Ciphertext, r.SignerPub)
			if v.Outcome != echeck.NoFault {
				return failf("the judge finds %s (delivery of line %d)", v, d.line)
			}
			c.summaryf("the judge finds no fault: K opens the goods of line %d", d.line)
		}
	}
	return nil
}

// decodedFields renders a message's fields: the e-cash steps as the writer
// does (ecash.DecodeTranscriptData), the NetBill steps here, in the same
// style (docs/TRANSCRIPTS.md lists them).
func decodedFields(step string, data []byte) (json.RawMessage, error) {
	if dec, err := ecash.DecodeTranscriptData(step, data); dec != nil || err != nil {
		return dec, err
	}
	f := netbillDecoders[step]
	if f == nil {
		return nil, errors.New("no decoder for this step")
	}
	v, err := f(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// netbillDecoders render the NetBill messages. They have the signature of
// an ecash.TranscriptDecoder, so echeck can register them for writers.
var netbillDecoders = map[string]ecash.TranscriptDecoder{
	"price-request": decodedPriceRequest,
	"quote":         decodedQuote,
	"delivery":      decodedDelivery,
	"signed-epo":    decodedSignedEPO,
	"endorsement":   decodedEndorsement,
	"epo-receipt":   decodedEPOReceipt,
}

func hx(b []byte) string { return hex.EncodeToString(b) }

func decodedPriceRequest(b []byte) (any, error) {
	r, err := echeck.DecodePriceRequest(b)
	if err != nil {
		return nil, err
	}
	h := r.PRDHash()
	return struct {
		Customer  string `json:"customer"`
		ProductID string `json:"product_id"`
		PRD       string `json:"prd"`
		PRDHash   string `json:"prd_hash"`
		Bid       string `json:"bid"`
		TID       string `json:"tid"`
	}{hx(r.Customer), r.ProductID, hx(r.PRD), hx(h[:]), r.Bid.String(), hx(r.TID[:])}, nil
}

func decodedQuote(b []byte) (any, error) {
	q, err := echeck.DecodeQuote(b)
	if err != nil {
		return nil, err
	}
	return struct {
		Customer        string `json:"customer"`
		MerchantAccount uint64 `json:"merchant_account"`
		MerchantPub     string `json:"merchant_pub"`
		ProductID       string `json:"product_id"`
		Price           string `json:"price"`
		PRDHash         string `json:"prd_hash"`
		TID             string `json:"tid"`
		ExpiresAt       int64  `json:"expires_at_unix_ms"`
		Sig             string `json:"signature"`
	}{hx(q.Customer), q.MerchantAccount, hx(q.MerchantPub), q.ProductID, q.Price.String(), hx(q.PRDHash[:]), hx(q.TID[:]), q.ExpiresAt.UnixMilli(), hx(q.Sig)}, nil
}

func decodedDelivery(b []byte) (any, error) {
	d, err := echeck.DecodeDelivery(b)
	if err != nil {
		return nil, err
	}
	return struct {
		EPOID           string `json:"epoid"`
		TID             string `json:"tid"`
		CiphertextBytes int    `json:"ciphertext_bytes"`
		GoodsHash       string `json:"goods_hash"`
		KeyCommit       string `json:"key_commit"`
	}{d.EPOID.String(), hx(d.TID[:]), len(d.Ciphertext), hx(d.GoodsHash[:]), hx(d.KeyCommit[:])}, nil
}

func decodedSignedEPO(b []byte) (any, error) {
	e, err := echeck.DecodeSignedEPO(b)
	if err != nil {
		return nil, err
	}
	h, bh := e.Hash(), e.BodyHash()
	return struct {
		Hash          string `json:"epo_hash"`
		BodyHash      string `json:"body_hash"`
		Kind          string `json:"kind"`
		Customer      string `json:"customer"`
		ProductID     string `json:"product_id"`
		Price         string `json:"price"`
		Account       uint64 `json:"merchant_account"`
		MerchantPub   string `json:"merchant_pub"`
		GoodsHash     string `json:"goods_hash"`
		KeyCommit     string `json:"key_commit"`
		PRDHash       string `json:"prd_hash"`
		EPOID         string `json:"epoid"`
		ExpiresAt     int64  `json:"expires_at_unix_ms"`
		SealedPrivate int    `json:"sealed_private_bytes"`
		CustomerSig   string `json:"customer_sig"`
	}{hx(h[:]), hx(bh[:]), e.Kind.String(), hx(e.Customer), e.ProductID, e.Price.String(), e.MerchantAccount, hx(e.MerchantPub),
		hx(e.GoodsHash[:]), hx(e.KeyCommit[:]), hx(e.PRDHash[:]), e.EPOID.String(), e.ExpiresAt.UnixMilli(), len(e.SealedPrivate), hx(e.CustomerSig)}, nil
}

func decodedEndorsement(b []byte) (any, error) {
	e, err := echeck.DecodeRecordedEndorsement(b) // a record: as endorsement above
	if err != nil {
		return nil, err
	}
	h := e.EPOHash()
	return struct {
		EPOHash     string `json:"epo_hash"`
		Account     uint64 `json:"merchant_account"`
		Memo        string `json:"memo"`
		SealedKey   int    `json:"sealed_key_bytes"`
		MerchantSig string `json:"merchant_sig"`
	}{hx(h[:]), e.MerchantAccount, e.Memo, len(e.SealedKey), hx(e.MerchantSig)}, nil
}

func decodedEPOReceipt(b []byte) (any, error) {
	r, err := echeck.DecodeReceipt(b)
	if err != nil {
		return nil, err
	}
	h := r.Hash()
	return struct {
		Hash      string `json:"receipt_hash"`
		EPOID     string `json:"epoid"`
		Decision  string `json:"decision"`
		Reason    string `json:"reason"`
		EPOHash   string `json:"epo_hash"`
		Kind      string `json:"kind"`
		Customer  string `json:"customer"`
		ProductID string `json:"product_id"`
		Price     string `json:"price"`
		Account   uint64 `json:"merchant_account"`
		Key       string `json:"key"`
		DecidedAt int64  `json:"decided_at_unix_ms"`
		Signer    string `json:"signer"`
		Sig       string `json:"signature"`
	}{hx(h[:]), r.EPOID.String(), r.Decision.String(), r.Reason, hx(r.EPOHash[:]), r.Kind.String(), hx(r.Customer), r.ProductID,
		r.Price.String(), r.MerchantAccount, hx(r.Key[:]), r.DecidedAt.UnixMilli(), hx(r.SignerPub), hx(r.Sig)}, nil
}
