package auditcmd

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// firstFailure audits and returns the first failure ("" if none).
func firstFailure(t *testing.T, data []byte, ks *KeySets, complete bool) (int, string) {
	t.Helper()
	rep := auditBytes(t, "t.jsonl", data, ks, complete)
	if f := rep.FirstFailure(); f != nil {
		return f.Line, f.Error
	}
	return 0, ""
}

func wantFailure(t *testing.T, data []byte, ks *KeySets, complete bool, line int, text string) {
	t.Helper()
	l, msg := firstFailure(t, data, ks, complete)
	if l != line || !strings.Contains(msg, text) {
		t.Errorf("first failure line %d: %q; want line %d: …%s…", l, msg, line, text)
	}
}

func edKey(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }

// TestSignedRecords: a wallet that records the signatures beside its
// withdraw and payment requests (RecordEntry) gets them verified.
func TestSignedRecords(t *testing.T) {
	ctx := context.Background()
	f := newFlowBank(t)
	ks, err := NewKeySets(f.keys.KeySet())
	if err != nil {
		t.Fatal(err)
	}
	acctKey := edKey(7)
	acctPub := acctKey.Public().(ed25519.PublicKey)
	acct, err := f.bank.OpenAccount(ctx, "signer", acctPub, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.bank.Credit(ctx, acct, ecash.MustParseAmount("EUR:5.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	kset := f.keys.KeySet()
	d, err := kset.CurrentDenomination(ecash.MustParseAmount("EUR:1.00"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ecash.DerivePlanchet(bytes.Repeat([]byte{9}, 32), 0)
	if err != nil {
		t.Fatal(err)
	}
	pl, st, err := ps.Blind(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	wr := &ecash.WithdrawRequest{Account: acct, CreatedAt: time.Now(), Planchets: []ecash.Planchet{pl}}
	rand.Read(wr.Nonce[:])
	body := wr.Body()
	sig := ecash.SignWithdraw(acctKey, wr, d.Value)
	resp, err := f.bankc.Withdraw(ctx, &pb.WithdrawRequest{Body: body, AccountSig: sig})
	if err != nil {
		t.Fatal(err)
	}
	csig, err := st.Unblind(resp.BlindSignatures[0])
	if err != nil {
		t.Fatal(err)
	}
	coin := ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: csig}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "a coffee", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		t.Fatal(err)
	}
	pay, err := ecash.NewPayment(pr, []ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{d.Value}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ecash.SealPayment(kset.HPKEPub, pr, pay)
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := f.merchant.Pay(ctx, o.ID, sealed)
	if err != nil {
		t.Fatal(err)
	}

	record := func(withdrawSig, withdrawSigner, paySig, paySigner []byte) []byte {
		var buf bytes.Buffer
		tr := ecash.NewTranscript(&buf, "wallet")
		now := time.Now()
		tr.RecordEntry(now, ecash.TranscriptEntry{Step: "withdraw-request", Data: body, Sig: withdrawSig, Signer: withdrawSigner})
		tr.Record(now, "coin", coin.Encode(), d.Value.String())
		tr.RecordEntry(now, ecash.TranscriptEntry{Step: "payment-request", Data: o.Request, Sig: paySig, Signer: paySigner, Note: o.Summary})
		tr.Record(now, "sealed-payment", sealed, o.ID)
		tr.Record(now, "deposit-receipt", receipt, "")
		return buf.Bytes()
	}
	good := record(sig, acctPub, o.Sig, nil)
	rep := auditBytes(t, "signed", good, ks, true)
	mustPass(t, rep)
	if !strings.Contains(rep.Lines[0].Summary, "account signature verified") || !strings.Contains(rep.Lines[2].Summary, "merchant signature verified") {
		t.Errorf("summaries: %q, %q", rep.Lines[0].Summary, rep.Lines[2].Summary)
	}
	if len(rep.Unverified) != 1 { // only the sealed payment
		t.Errorf("not verified: %+v", rep.Unverified)
	}
	mustPass(t, auditBytes(t, "signer", record(sig, acctPub, o.Sig, pr.MerchantPub), ks, true))

	bad := bytes.Clone(sig)
	bad[0] ^= 1
	wantFailure(t, record(bad, acctPub, o.Sig, nil), ks, true, 1, "the account signature does not verify")
	wantFailure(t, record(sig, nil, o.Sig, nil), ks, true, 1, "without the key it verifies under")
	wantFailure(t, record(nil, acctPub, o.Sig, nil), ks, true, 1, "signer without sig")
	wantFailure(t, record(sig, edKey(8).Public().(ed25519.PublicKey), o.Sig, nil), ks, true, 1, "the account signature does not verify")
	badPay := bytes.Clone(o.Sig)
	badPay[5] ^= 1
	wantFailure(t, record(sig, acctPub, badPay, nil), ks, true, 3, "the merchant signature does not verify")
	wantFailure(t, record(sig, acctPub, o.Sig, acctPub), ks, true, 3, "is not the merchant key the message names")

	// A signature beside a message that carries its own is refused.
	var buf bytes.Buffer
	ecash.NewTranscript(&buf, "wallet").RecordEntry(time.Now(), ecash.TranscriptEntry{Step: "deposit-receipt", Data: receipt, Sig: sig})
	wantFailure(t, buf.Bytes(), ks, false, 1, "carries no signature beside its data")
}

// TestJudge: with the delivery recorded, the audit runs the judge: an
// honest till passes; a till that commits to one key and encrypts under
// another is caught even though the bank approved (K matches the
// commitment).
func TestJudge(t *testing.T) {
	ctx := context.Background()
	f := newFlowBank(t)
	kset := f.keys.KeySet()
	ks, err := NewKeySets(kset)
	if err != nil {
		t.Fatal(err)
	}
	custKey := edKey(11)
	custPub := custKey.Public().(ed25519.PublicKey)
	cust, err := f.bank.OpenAccount(ctx, "customer", custPub, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.bank.Credit(ctx, cust, ecash.MustParseAmount("EUR:10.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(q *echeck.Quote, d *echeck.Delivery) *echeck.SignedEPO {
		epo := echeck.NewGoodsEPO(custPub, q, d, d.EPOID.Timestamp.Add(15*time.Minute))
		priv := echeck.EPOPrivate{Account: cust}
		copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
		rand.Read(priv.Nonce[:])
		s, err := echeck.NewSignedEPO(epo, priv, kset.HPKEPub, custKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	record := func(quote, delivery, epo, receipt []byte, id string) []byte {
		var buf bytes.Buffer
		tr := ecash.NewTranscript(&buf, "wallet")
		now := time.Now()
		tr.Record(now, "quote", quote, "song")
		tr.Record(now, "delivery", delivery, "song")
		tr.Record(now, "signed-epo", epo, id)
		tr.Record(now, "epo-receipt", receipt, id)
		return buf.Bytes()
	}

	// The honest till.
	req := &echeck.PriceRequest{Customer: custPub, ProductID: "song", Bid: ecash.Amount{Currency: "EUR"}}
	rand.Read(req.TID[:])
	quote, err := f.merchant.Quote(req.Encode())
	if err != nil {
		t.Fatal(err)
	}
	delivery, err := f.merchant.GetGoods(ctx, quote)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := echeck.DecodeQuote(quote)
	d, _ := echeck.DecodeDelivery(delivery)
	epo := sign(q, d)
	ans, err := f.merchant.SubmitEPO(ctx, epo.Encode())
	if err != nil {
		t.Fatal(err)
	}
	good := record(quote, delivery, epo.Encode(), ans.RawReceipt, epo.EPOID.String())
	rep := auditBytes(t, "honest", good, ks, true)
	mustPass(t, rep)
	if !strings.Contains(rep.Lines[3].Summary, "the judge finds no fault") {
		t.Errorf("receipt: %s", rep.Lines[3].Summary)
	}
	// Goods other than those delivered: the delivery's own hash catches it.
	d2 := *d
	d2.Ciphertext = bytes.Clone(d.Ciphertext)
	d2.Ciphertext[0] ^= 1
	wantFailure(t, record(quote, d2.Encode(), epo.Encode(), ans.RawReceipt, epo.EPOID.String()), ks, false, 2, "goods hash does not match")
	d2.GoodsHash = echeck.GoodsHash(d2.Ciphertext)
	wantFailure(t, record(quote, d2.Encode(), epo.Encode(), ans.RawReceipt, epo.EPOID.String()), ks, false, 3, "another goods hash or key commitment")

	// A cheating till (its own key and account): it commits to K2 and
	// releases it, but encrypted the goods under K1.
	mKey := edKey(12)
	mAcct, err := f.bank.OpenAccount(ctx, "cheat", mKey.Public().(ed25519.PublicKey), true)
	if err != nil {
		t.Fatal(err)
	}
	rand.Read(req.TID[:])
	cq := echeck.NewQuote(req, mAcct, ecash.MustParseAmount("EUR:1.50"), time.Now().Add(time.Minute), mKey)
	id := echeck.NewEPOID(mAcct, time.Now(), 1)
	k1, ct, err := echeck.EncryptGoods(rand.Reader, id, []byte("not what you paid for"))
	if err != nil {
		t.Fatal(err)
	}
	k2 := k1
	k2[0] ^= 1
	cd := &echeck.Delivery{EPOID: id, TID: req.TID, Ciphertext: ct, GoodsHash: echeck.GoodsHash(ct), KeyCommit: echeck.KeyCommit(k2)}
	cepo := sign(cq, cd)
	end, err := echeck.NewEndorsement(cepo, mAcct, "", &k2, kset.HPKEPub, mKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.bankc.SubmitCheck(ctx, &pb.SubmitCheckRequest{Endorsement: end.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	cheated := record(cq.Encode(), cd.Encode(), cepo.Encode(), res.Receipt, id.String())
	wantFailure(t, cheated, ks, false, 4, "the judge finds merchant fault")
}

// TestRecordParsing: a line is one record of the known fields, in
// lower-case hex, for a known party and step.
func TestRecordParsing(t *testing.T) {
	ks, files := loadExamples(t)
	a := linesOf(files[exWithdrawPay])
	coin := rec(t, a[1])
	noTime := coin
	noTime.Time = 0
	for _, c := range []struct {
		name, line, err string
	}{
		{"empty", "", "empty line"},
		{"not JSON", "coin", "not a transcript record"},
		{"two values", a[1] + " {}", "more than one JSON value"},
		{"unknown field", strings.Replace(a[1], `{"time_unix_ms"`, `{"extra":1,"time_unix_ms"`, 1), "unknown field"},
		{"upper-case hex", strings.Replace(a[1], coin.Data, strings.ToUpper(coin.Data), 1), "not lower-case hex"},
		{"no time", lineOf(t, noTime), "without a time"},
		{"other party", strings.Replace(a[1], `"party":"wallet"`, `"party":"bank"`, 1), "unknown party"},
		{"no data", strings.Replace(a[1], `"data":"`+coin.Data+`"`, `"data":""`, 1), "without data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := transcript{a[0], c.line}.bytes()
			l, msg := firstFailure(t, tr, ks, false)
			if l != 2 || !strings.Contains(msg, c.err) {
				t.Errorf("line %d: %q; want line 2: …%s…", l, msg, c.err)
			}
		})
	}
}

// TestPartial: a transcript of one command (here: a payment, without the
// withdrawal that issued its coins) passes, listing what it cannot check;
// taken as complete it fails.
func TestPartial(t *testing.T) {
	ks, files := loadExamples(t)
	a := linesOf(files[exWithdrawPay])
	pay := a[a.find(t, "payment-request", 0):].bytes()
	rep := auditBytes(t, "pay.jsonl", pay, ks, false)
	mustPass(t, rep)
	found := false
	for _, u := range rep.Unverified {
		found = found || strings.Contains(u.What, "were not issued in this transcript")
	}
	if !found {
		t.Errorf("unverified: %+v", rep.Unverified)
	}
	wantFailure(t, pay, ks, true, 3, "not issued in this transcript")

	// A receipt alone (as 'wallet recover' may record it).
	only := a[a.find(t, "deposit-receipt", 0):].bytes()
	mustPass(t, auditBytes(t, "recover.jsonl", only, ks, false))
	wantFailure(t, only, ks, true, 1, "the payment request a receipt answers is not in this transcript")
}

// TestDecoded: the report carries every line's decoded fields on request;
// NetBill records with decoded fields (as echeck could register them) are
// checked like e-cash ones.
func TestDecoded(t *testing.T) {
	ks, files := loadExamples(t)
	rep, err := Verify(bytes.NewReader(files[exMerchantNetBill]), "m", ks, Options{Decoded: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Lines {
		if len(l.Decoded) == 0 {
			t.Errorf("line %d %s: no decoded fields", l.Line, l.Step)
		}
	}
	lines := linesOf(files[exMerchantNetBill])
	r := rec(t, lines[1])
	r.Decoded = rep.Lines[1].Decoded
	lines[1] = lineOf(t, r)
	mustPass(t, auditBytes(t, "m", lines.bytes(), ks, false))
	r.Decoded = []byte(strings.Replace(string(r.Decoded), `"price":"EUR:1.50"`, `"price":"EUR:0.15"`, 1))
	lines[1] = lineOf(t, r)
	wantFailure(t, lines.bytes(), ks, false, 2, "decoded.price is \"EUR:0.15\", the data says \"EUR:1.50\"")
}

// TestKeySets: key sets of one bank only; files raw or hex; a pinned master.
func TestKeySets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(transcriptsDir, keySetFile))
	if err != nil {
		t.Fatal(err)
	}
	ks, _, err := parseKeySet(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseKeySet([]byte(hex.EncodeToString(raw)+"\n"), ks.MasterPub); err != nil {
		t.Errorf("hex key set: %v", err)
	}
	if _, _, err := parseKeySet(raw, edKey(1).Public().(ed25519.PublicKey)); err == nil {
		t.Error("a key set of another master key accepted")
	}
	other, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{{Value: ecash.MustParseAmount("EUR:1"), Cipher: ecash.CipherCS}}}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeySets(ks, other.KeySet()); err == nil || !strings.Contains(err.Error(), "two banks") {
		t.Errorf("key sets of two banks: %v", err)
	}
	both, err := NewKeySets(ks, ks)
	if err != nil || len(both.Sets()) != 1 {
		t.Errorf("the same key set twice: %v", err)
	}
}

// FuzzVerify: no transcript, however mangled, makes the audit panic or
// accept a line without a result.
func FuzzVerify(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join(transcriptsDir, keySetFile))
	if err != nil {
		f.Fatal(err)
	}
	kset, err := ecash.DecodeKeySet(raw, nil)
	if err != nil {
		f.Fatal(err)
	}
	ks, err := NewKeySets(kset)
	if err != nil {
		f.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(transcriptsDir, "*.jsonl"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// Seeds of a few lines each, so mutations reach the checks.
		ls := linesOf(b)
		for i := 0; i+3 <= len(ls); i += 3 {
			f.Add(ls[i : i+3].bytes())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, complete := range []bool{false, true} {
			rep, err := Verify(bytes.NewReader(data), "fuzz", ks, Options{Complete: complete, Decoded: true})
			if err != nil {
				continue
			}
			for _, l := range rep.Lines {
				if l.OK == (l.Error != "") {
					t.Fatalf("line %d: ok %v, error %q", l.Line, l.OK, l.Error)
				}
			}
		}
	})
}

// TestRotatedSigningKey: after the bank rotates its signing key, its new
// key set lists the old key with the window it signed in, and the
// transcripts signed with it still verify against the new key set alone.
func TestRotatedSigningKey(t *testing.T) {
	f := newFlowBank(t)
	var tr bytes.Buffer
	w := f.customer(t, t.TempDir(), &tr, "EUR:5.00")
	defer w.Close()
	withdraw(t, f, w, "EUR:1.00")
	if _, err := f.pay(t, w, f.order(t, "EUR:0.04", "a sweet")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.buy(w, "song", ""); err != nil {
		t.Fatal(err)
	}
	old := f.keys.KeySet()
	if _, err := f.keys.RotateSigning(time.Now().Add(time.Second), time.Hour, rand.Reader); err != nil {
		t.Fatal(err)
	}
	rotated := f.keys.KeySet()
	if rotated.SigningPub.Equal(old.SigningPub) || len(rotated.PastSigning) != 1 {
		t.Fatal("the signing key did not rotate")
	}
	ks, err := NewKeySets(rotated)
	if err != nil {
		t.Fatal(err)
	}
	mustPass(t, auditBytes(t, "rotated", tr.Bytes(), ks, true))

	// A key set that does not list the old key (as before rotations were
	// published) refuses what it signed.
	bare := *rotated
	bare.PastSigning = nil
	ks, err = NewKeySets(&bare)
	if err != nil {
		t.Fatal(err)
	}
	wantFailure(t, tr.Bytes(), ks, true, linesOf(tr.Bytes()).find(t, "deposit-receipt", 0)+1, "does not list")
}
