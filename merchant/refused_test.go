package merchant

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// signFor signs epo with key, its private part naming account.
func (s *shop) signFor(epo echeck.EPO, key ed25519.PrivateKey, account uint64) []byte {
	s.t.Helper()
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
	priv := echeck.EPOPrivate{Account: account}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	ks, _ := s.bank.KeySet()
	signed, err := echeck.NewSignedEPO(epo, priv, ks.HPKEPub, key)
	if err != nil {
		s.t.Fatal(err)
	}
	return signed.Encode()
}

// junkCheck is a check signed by a key of its own that names the
// customer's account in its private part: the bank refuses it and counts
// a failed authentication of that account.
func (s *shop) junkCheck() (echeck.EPOID, []byte) {
	s.t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := s.clock.now()
	id, _ := echeck.NewCheckEPOID(rand.Reader, s.account, now)
	return id, s.signFor(echeck.EPO{
		Kind: echeck.KindCheck, Customer: key.Public().(ed25519.PublicKey), ProductID: "x", Price: ecash.MustParseAmount("EUR:0.01"),
		MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: now.Add(24 * time.Hour),
	}, key, s.custAcct)
}

// TestRefusedCheckDropped: a check the bank refuses outright, and holds no
// record of, is dropped at once (record and mark), so Reconcile does not
// send it again. It used to be sent every 30 seconds for ever, each time
// counting a failed authentication of the account it names: one junk
// check from anyone locked that account every day.
func TestRefusedCheckDropped(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	id, raw := s.junkCheck()
	if _, err := s.m.WriteCheck(ctx, raw); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("WriteCheck: %v, want the bank's refusal", err)
	}
	if s.hasEndorsedMark(id) {
		t.Error("refused check still marked")
	}
	if _, err := s.m.loadSale(id); !errors.Is(err, ErrNoSale) {
		t.Errorf("refused check still recorded: %v", err)
	}
	before := s.bankc.submits.Load()
	for range 10 {
		s.clock.add(30 * time.Second)
		if _, err := s.m.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.bankc.submits.Load() - before; n != 0 {
		t.Errorf("Reconcile sent the refused check %d times", n)
	}
}

// TestJunkChecksLockNobodyOut: a stranger writes checks at the shop naming
// the customer's account (which the shop cannot see: it is sealed to the
// bank), signed with keys of their own. The bank refuses each, and none
// counts against the customer: the customer's own check and order at the
// shop go through.
func TestJunkChecksLockNobodyOut(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	for i := range 2 * bank.MaxAuthFailures {
		_, raw := s.junkCheck()
		if _, err := s.m.WriteCheck(ctx, raw); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("junk check %d: %v, want the bank's refusal", i, err)
		}
	}
	if a := s.writeCheck("EUR:1.00"); a.Receipt.Decision != echeck.Approved {
		t.Fatalf("the customer's own check after a stranger's junk: %s (%q)", a.Receipt.Decision, a.Receipt.Reason)
	}
	_, q, d := s.offer("song")
	a, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour))))
	if err != nil || a.Receipt.Decision != echeck.Approved {
		t.Fatalf("the customer's own order after a stranger's junk: %v, %v", a, err)
	}
}

// TestRefusedCheckKept: a refused check is kept, marked, while the bank
// cannot say whether it holds a record of it; Reconcile then asks again
// and drops it.
func TestRefusedCheckKept(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	id, raw := s.junkCheck()
	s.bankc.statusDown.Store(true)
	if _, err := s.m.WriteCheck(ctx, raw); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("WriteCheck: %v, want the bank's refusal", err)
	}
	if !s.hasEndorsedMark(id) {
		t.Fatal("refused check dropped with the bank's record of it unknown")
	}
	if _, err := s.m.Reconcile(ctx); err == nil {
		t.Error("Reconcile settled the check with the bank unreachable")
	}
	s.bankc.statusDown.Store(false)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if s.hasEndorsedMark(id) {
		t.Error("still marked")
	}
	if _, err := s.m.loadSale(id); !errors.Is(err, ErrNoSale) {
		t.Errorf("still recorded: %v", err)
	}
}

// TestRefusedCheckEPOIDConflict: a check refused because the bank decided
// another EPO under its EPOID stays marked (an error to look into), and
// the other EPO's receipt is not stored as its own.
func TestRefusedCheckEPOIDConflict(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	now := s.clock.now()
	id, _ := echeck.NewCheckEPOID(rand.Reader, s.account, now)
	check := echeck.EPO{
		Kind: echeck.KindCheck, Customer: s.customerPub(), ProductID: "x", Price: ecash.MustParseAmount("EUR:0.01"),
		MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: now.Add(time.Hour),
	}
	// The bank decides one check under id, sent past this till.
	first, err := echeck.DecodeSignedEPO(s.sign(check))
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := s.bank.KeySet()
	end, err := echeck.NewEndorsement(first, s.account, "check", nil, ks.HPKEPub, s.m.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.bank.SubmitCheck(ctx, end.Encode()); err != nil {
		t.Fatal(err)
	}
	check.Price = ecash.MustParseAmount("EUR:0.02")
	if _, err := s.m.WriteCheck(ctx, s.sign(check)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("WriteCheck: %v, want the bank's EPOID conflict", err)
	}
	if sl, err := s.m.loadSale(id); err != nil || sl.Receipt != nil || !s.hasEndorsedMark(id) {
		t.Fatalf("sale (%v) with a receipt %v, marked %v: want it kept, marked, without the other check's receipt", err, sl != nil && sl.Receipt != nil, s.hasEndorsedMark(id))
	}
}

// TestRefusedGoodsEPOCorrected: a goods EPO the bank refuses outright (its
// private part names no customer account) leaves the sale delivered, not
// endorsed, so the customer's corrected EPO is taken, not refused as
// another under an endorsed EPOID.
func TestRefusedGoodsEPOCorrected(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("song")
	epo := echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour))
	if _, err := s.m.SubmitEPO(ctx, s.signFor(epo, s.custKey, s.account)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("SubmitEPO: %v, want the bank's refusal", err)
	}
	if sl, err := s.m.loadSale(d.EPOID); err != nil || sl.EPO != nil || sl.Endorsement != nil || s.hasEndorsedMark(d.EPOID) {
		t.Fatalf("sale (%v) endorsed %v, marked %v: want it delivered again", err, sl != nil && sl.Endorsement != nil, s.hasEndorsedMark(d.EPOID))
	}
	a, err := s.m.SubmitEPO(ctx, s.sign(epo))
	if err != nil || a.Receipt.Decision != echeck.Approved {
		t.Fatalf("corrected EPO: %v", err)
	}
	if s.balance(s.custAcct) != 2000-150 {
		t.Fatalf("balance %d", s.balance(s.custAcct))
	}
}

// TestRefusedGoodsEPOPastDeliveryTTL: a goods EPO the bank refuses only
// after DeliveryTTL (the bank was unreachable meanwhile) is deleted, not
// delivered again: no EPO could pay it, and pruneDeliveries has passed its
// time, so it would be kept for ever.
func TestRefusedGoodsEPOPastDeliveryTTL(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("song")
	epo := echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour))
	s.bankc.checksDown.Store(true)
	if _, err := s.m.SubmitEPO(ctx, s.signFor(epo, s.custKey, s.account)); status.Code(err) != codes.Unavailable {
		t.Fatalf("SubmitEPO: %v, want the bank unreachable", err)
	}
	s.clock.add(DeliveryTTL + ecash.MaxClockSkew + time.Minute)
	if _, err := s.m.Reconcile(ctx); err == nil {
		t.Fatal("Reconcile settled the sale with the bank unreachable")
	}
	s.bankc.checksDown.Store(false)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.loadSale(d.EPOID); !errors.Is(err, ErrNoSale) || s.hasEndorsedMark(d.EPOID) {
		t.Fatalf("sale: %v, marked %v; want it deleted", err, s.hasEndorsedMark(d.EPOID))
	}
}

// TestRefusedSaleSettledFromRecordInTranscript: an order an earlier build
// of the bank decided (its customer's memo holds control characters, which
// the bank now refuses from a peer) and whose answer the till lost is sent
// again by Reconcile; the bank refuses the endorsement outright yet
// answers for its record, and the till settles the sale from it
// (settleRefused). The receipt must be in the till's transcript, as every
// other receipt the till stores is: it was stored with no transcript line,
// so an auditor of the transcript missed the sale.
func TestRefusedSaleSettledFromRecordInTranscript(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	tr := s.recordTranscript()
	_, q, d := s.offer("song")
	// What the earlier build's wallet could sign: a memo with a bell and an
	// escape, sealed to the bank.
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
	priv := echeck.EPOPrivate{Account: s.custAcct, Memo: "rent\x07 \x1b[2J"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	ks, _ := s.bank.KeySet()
	epo := &echeck.SignedEPO{EPO: echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour))}
	h := epo.EPO.BodyHash()
	var err error
	if epo.SealedPrivate, err = ecash.Seal(ks.HPKEPub, echeck.InfoEPOPrivate, h[:], priv.Encode()); err != nil {
		t.Fatal(err)
	}
	epo.CustomerSig = ecash.SignBody(s.custKey, epo.SignatureInput())

	s.bankc.checksDown.Store(true)
	if _, err := s.m.SubmitEPO(ctx, epo.Encode()); status.Code(err) != codes.Unavailable {
		t.Fatalf("SubmitEPO: %v, want the bank unreachable", err)
	}
	s.bankc.checksDown.Store(false)
	sl, err := s.m.loadSale(d.EPOID)
	if err != nil || sl.Endorsement == nil {
		t.Fatalf("sale %v: want it endorsed", err)
	}
	// Decided by the earlier build, through the bank's store.
	receipt := func(dec echeck.Decision, reason string, k [32]byte) []byte {
		r, err := echeck.NewReceipt(epo, dec, reason, k, s.clock.now(), bankKeys(t).Signing)
		if err != nil {
			t.Fatal(err)
		}
		return r.Encode()
	}
	op := bank.CheckOp{EPOID: d.EPOID.String(), EPOHash: epo.Hash(), Customer: s.custAcct, Merchant: s.account,
		Amount: int64(epo.Price.Value), Product: epo.ProductID, Memo: priv.Memo, MerchantMemo: "sale of song", Record: sl.Endorsement, Time: s.clock.now(),
		Approved:      receipt(echeck.Approved, "", sl.Key),
		DeclinedFunds: receipt(echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}),
		DeclinedLimit: receipt(echeck.Declined, echeck.ReasonLimitExceeded, [32]byte{}),
		Log: auditlog.Check{EPOID: d.EPOID.String(), EPOHash: epo.Hash(), PartsHash: epo.PartsHash(), CustomerSig: epo.CustomerSig,
			Customer: s.custAcct, Merchant: s.account, Amount: epo.Price}}
	if out, err := s.bank.Store().Check(ctx, op); err != nil || out.Outcome != bank.CheckApproved {
		t.Fatalf("recording the order: %+v, %v", out, err)
	}
	if _, err := s.bankc.SubmitCheck(ctx, &pb.SubmitCheckRequest{Endorsement: sl.Endorsement}); !bank.Definitive(err) {
		t.Fatalf("the bank takes the endorsement sent again (%v): the test needs it refused outright", err)
	}

	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if sl, err := s.m.loadSale(d.EPOID); err != nil || sl.Receipt == nil || s.hasEndorsedMark(d.EPOID) {
		t.Fatalf("sale (%v) with a receipt %v, marked %v: want it settled from the bank's record", err, sl != nil && sl.Receipt != nil, s.hasEndorsedMark(d.EPOID))
	}
	steps := map[string]int{}
	for line := range strings.Lines(tr.String()) {
		var rec ecash.TranscriptRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("transcript line %q: %v", line, err)
		}
		if rec.Note == d.EPOID.String() {
			steps[rec.Step]++
		}
	}
	if steps["signed-epo"] != 1 || steps["endorsement"] != 1 || steps["epo-receipt"] != 1 {
		t.Fatalf("the till's transcript records %v for the sale; want its EPO, endorsement and receipt once each", steps)
	}
}
