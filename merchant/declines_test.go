package merchant

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// submitDirect endorses a signed EPO as the shop would, with the goods key
// given (nil for a check; any key, right or wrong, for goods), and submits
// it straight to the bank, as a merchant that skips its own checks could.
func (s *shop) submitDirect(raw []byte, key *[32]byte) (*pb.CheckResult, error) {
	s.t.Helper()
	signed, err := echeck.DecodeSignedEPO(raw)
	if err != nil {
		s.t.Fatal(err)
	}
	ks, _ := s.bank.KeySet()
	enc := signed.Encode()
	end := &echeck.Endorsement{EPO: enc, MerchantAccount: s.account, Memo: "direct"}
	if key != nil {
		h := ecash.HashOf(enc)
		if end.SealedKey, err = ecash.Seal(ks.HPKEPub, echeck.InfoGoodsKey, h[:], key[:]); err != nil {
			s.t.Fatal(err)
		}
	}
	end.MerchantSig = ecash.SignBody(s.m.key, end.Body())
	return s.bankc.srv.SubmitCheck(context.Background(), &pb.SubmitCheckRequest{Endorsement: end.Encode()})
}

// A decline the bank decides before its commit, once both signatures
// verify, is a signed receipt too, recorded once for the EPOID (NetBill's
// "every decline is a signed receipt"): a late EPO and a goods key that
// does not match its commitment. No money moves; a re-submission gets the
// same receipt, byte for byte.
func TestDeclinedBeforeTheCommitIsSigned(t *testing.T) {
	s := newShop(t)
	ks, _ := s.bank.KeySet()
	custBefore, shopBefore := s.balance(s.custAcct), s.balance(s.account)

	late := func() []byte {
		now := s.clock.now()
		id, err := echeck.NewCheckEPOID(rand.Reader, s.account, now)
		if err != nil {
			t.Fatal(err)
		}
		return s.sign(echeck.EPO{Kind: echeck.KindCheck, Customer: s.customerPub(), Price: ecash.MustParseAmount("EUR:1.00"),
			MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: now.Add(time.Minute)})
	}()
	s.clock.add(2 * time.Minute)
	_, q, d := s.offer("song")
	goods := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour)))
	var wrong [32]byte
	if _, err := rand.Read(wrong[:]); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, outcome, reason string
		raw                   []byte
		key                   *[32]byte
	}{
		{"expired", bank.CheckDeclinedExpired, echeck.ReasonExpired, late, nil},
		{"wrong goods key", bank.CheckDeclinedBadKey, echeck.ReasonBadKey, goods, &wrong},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := s.submitDirect(c.raw, c.key)
			if err != nil {
				t.Fatalf("the bank answered with an error, not a signed decline: %v", err)
			}
			r, err := echeck.DecodeReceipt(resp.Receipt)
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.CheckSigner(r.SignerPub, r.DecidedAt); err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(r.SignerPub); err != nil {
				t.Fatal(err)
			}
			if r.Decision != echeck.Declined || r.Reason != c.reason || r.Key != ([32]byte{}) {
				t.Errorf("receipt: %s %q, key %x; want a decline %q without a key", r.Decision, r.Reason, r.Key[:4], c.reason)
			}
			out, found, err := s.bank.Store().CheckRecord(context.Background(), r.EPOID.String())
			if err != nil || !found || out.Outcome != c.outcome || !bytes.Equal(out.Receipt, resp.Receipt) {
				t.Errorf("recorded %q (found %v, %v), want %q with the receipt sent", out.Outcome, found, err, c.outcome)
			}
			again, err := s.submitDirect(c.raw, c.key)
			if err != nil || !bytes.Equal(again.Receipt, resp.Receipt) {
				t.Errorf("re-submission: %v, same receipt %v", err, err == nil && bytes.Equal(again.Receipt, resp.Receipt))
			}
		})
	}
	if c, m := s.balance(s.custAcct), s.balance(s.account); c != custBefore || m != shopBefore {
		t.Errorf("balances moved: customer %d → %d, shop %d → %d", custBefore, c, shopBefore, m)
	}

	// Malformed for this bank is still refused, and nothing is recorded:
	// a goods key sealed under another key than the bank's.
	_, q, d = s.offer("film")
	raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour)))
	signed, _ := echeck.DecodeSignedEPO(raw)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	end := &echeck.Endorsement{EPO: signed.Encode(), MerchantAccount: s.account, Memo: "direct"}
	h := ecash.HashOf(end.EPO)
	end.SealedKey, _ = ecash.Seal(other.PublicKey().Bytes(), echeck.InfoGoodsKey, h[:], wrong[:])
	end.MerchantSig = ecash.SignBody(s.m.key, end.Body())
	if _, err := s.bankc.srv.SubmitCheck(context.Background(), &pb.SubmitCheckRequest{Endorsement: end.Encode()}); err == nil {
		t.Error("a goods key the bank cannot open was answered, want a refusal")
	}
	if _, found, _ := s.bank.Store().CheckRecord(context.Background(), signed.EPOID.String()); found {
		t.Error("a refused endorsement was recorded")
	}
}
