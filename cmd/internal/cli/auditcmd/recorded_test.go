package auditcmd

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// TestEndorsementRecordedBeforeTextRules: a till's transcript from before
// memos followed ecash.CheckText, whose endorsement's memo holds control
// characters, is audited by the rule the memo was signed under (the bank
// answers for the same order: echeck.DecodeRecordedEndorsement); it failed
// as "does not decode". The signature is still checked over exactly the
// recorded bytes, and the earlier rule (UTF-8, the length) still holds.
func TestEndorsementRecordedBeforeTextRules(t *testing.T) {
	now := time.Now()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{{Value: ecash.MustParseAmount("EUR:1"), Cipher: ecash.CipherCS}}}, now.Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kset := k.KeySet()
	ks, err := NewKeySets(kset)
	if err != nil {
		t.Fatal(err)
	}
	const custAcct, shopAcct = 7, 9
	custKey, shopKey := edKey(21), edKey(22)
	id, err := echeck.NewCheckEPOID(rand.Reader, shopAcct, now)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv := echeck.EPOPrivate{Account: custAcct}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	epo, err := echeck.NewSignedEPO(echeck.EPO{
		Kind: echeck.KindCheck, Customer: custKey.Public().(ed25519.PublicKey), Price: ecash.MustParseAmount("EUR:2.00"),
		MerchantAccount: shopAcct, MerchantPub: shopKey.Public().(ed25519.PublicKey), EPOID: id, ExpiresAt: id.Timestamp.Add(15 * time.Minute),
	}, priv, kset.HPKEPub, custKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := echeck.NewReceipt(epo, echeck.Approved, "", [32]byte{}, now, k.Signing)
	if err != nil {
		t.Fatal(err)
	}
	// The endorsement as an older till could sign it (the bank accepted
	// such memos then), and its transcript.
	endorse := func(memo string) []byte {
		end := &echeck.Endorsement{EPO: epo.Encode(), MerchantAccount: shopAcct, Memo: memo}
		end.MerchantSig = ecash.SignBody(shopKey, end.Body())
		return end.Encode()
	}
	record := func(end []byte) []byte {
		var buf bytes.Buffer
		tr := ecash.NewTranscript(&buf, "merchant")
		tr.Record(now, "signed-epo", epo.Encode(), id.String())
		tr.Record(now, "endorsement", end, id.String())
		tr.Record(now, "epo-receipt", r.Encode(), id.String())
		return buf.Bytes()
	}

	memo := "paid\x07 \x1b[2J"
	rep, err := Verify(bytes.NewReader(record(endorse(memo))), "old-till", ks, Options{Complete: true, Decoded: true})
	if err != nil {
		t.Fatal(err)
	}
	mustPass(t, rep)
	if s := rep.Lines[1].Summary; !strings.Contains(s, "merchant and customer signatures verified") || !strings.Contains(s, "earlier rule") {
		t.Errorf("the endorsement's summary: %q", s)
	}
	if d := string(rep.Lines[1].Decoded); !strings.Contains(d, `"memo":"paid\u0007 \u001b[2J"`) {
		t.Errorf("decoded: %s", d)
	}
	if s := rep.Lines[1].Summary; strings.ContainsAny(s, "\x07\x1b") {
		t.Errorf("the summary shows the memo's control characters: %q", s)
	}

	// The signature covers the recorded bytes: a memo changed after signing
	// fails, and so does one the earlier rule refused too.
	changed := endorse(memo)
	changed[bytes.Index(changed, []byte("paid"))] = 'P'
	wantFailure(t, record(changed), ks, true, 2, "the endorsement does not verify")
	wantFailure(t, record(endorse("paid\xff")), ks, true, 2, "not UTF-8")
	wantFailure(t, record(endorse(strings.Repeat("m", echeck.MaxMemoLen+1))), ks, true, 2, "exceeds")
}
