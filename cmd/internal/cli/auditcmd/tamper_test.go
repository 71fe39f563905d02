package auditcmd

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// tamperedDir (under transcriptsDir) holds the tampered transcripts and
// manifest.json, which says for each the line, step and error the audit
// must report first.
const tamperedDir = "tampered"

// tamperCase is one entry of the manifest.
type tamperCase struct {
	File     string `json:"file"`
	Base     string `json:"base"`
	Change   string `json:"change"`
	Complete bool   `json:"complete,omitempty"`
	Line     int    `json:"line"`
	Step     string `json:"step"`
	Error    string `json:"error"`
	data     []byte
}

// transcript is a transcript's lines, for tampering.
type transcript []string

func linesOf(b []byte) transcript {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (tr transcript) bytes() []byte { return []byte(strings.Join(tr, "\n") + "\n") }

func (tr transcript) clone() transcript { return append(transcript(nil), tr...) }

// find is the index of the nth (from 0) line of step; -1 for the last.
func (tr transcript) find(t *testing.T, step string, nth int) int {
	t.Helper()
	var at []int
	for i, l := range tr {
		if rec(t, l).Step == step {
			at = append(at, i)
		}
	}
	if nth == -1 {
		nth = len(at) - 1
	}
	if nth < 0 || nth >= len(at) {
		t.Fatalf("no %s number %d", step, nth)
	}
	return at[nth]
}

func (tr transcript) data(t *testing.T, i int) []byte {
	t.Helper()
	b, err := hex.DecodeString(rec(t, tr[i]).Data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// move takes line from and puts it before line to (indices before the move).
func (tr transcript) move(from, to int) transcript {
	l := tr[from]
	out := append(tr[:from:from], tr[from+1:]...)
	if to > from {
		to--
	}
	return append(out[:to:to], append(transcript{l}, out[to:]...)...)
}

func (tr transcript) remove(i int) transcript {
	return append(tr[:i:i], tr[i+1:]...)
}

func rec(t *testing.T, line string) ecash.TranscriptRecord {
	t.Helper()
	var r ecash.TranscriptRecord
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func lineOf(t *testing.T, r ecash.TranscriptRecord) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withData is line with new data, its decoded fields re-rendered as the
// writer would (a careful forger keeps them consistent).
func withData(t *testing.T, line string, data []byte) string {
	t.Helper()
	r := rec(t, line)
	r.Data = hex.EncodeToString(data)
	if r.Decoded != nil {
		r.Decoded, _ = ecash.DecodeTranscriptData(r.Step, data)
	}
	return lineOf(t, r)
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

// writeTampered makes the tampered transcripts from the good ones, checks
// that each fails as intended, and writes them and the manifest.
func writeTampered(t *testing.T, good map[string][]byte, bk *bank.Keys, ks *KeySets) {
	cases := tamper(t, good, bk)
	dir := filepath.Join(transcriptsDir, tamperedDir)
	old, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, f := range old {
		os.Remove(f)
	}
	for _, c := range cases {
		checkTampered(t, c, c.data, ks)
		if err := os.WriteFile(filepath.Join(dir, c.File), c.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.MarshalIndent(cases, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkTampered: the audit's first failure is the manifest's line, step
// and error.
func checkTampered(t *testing.T, c tamperCase, data []byte, ks *KeySets) {
	t.Helper()
	rep := auditBytes(t, c.File, data, ks, c.Complete)
	f := rep.FirstFailure()
	if f == nil {
		t.Errorf("%s (%s): accepted", c.File, c.Change)
		return
	}
	if f.Line != c.Line || f.Step != c.Step || !strings.Contains(f.Error, c.Error) {
		t.Errorf("%s (%s): first failure line %d %s: %s\nwant line %d %s: …%s…", c.File, c.Change, f.Line, f.Step, f.Error, c.Line, c.Step, c.Error)
	}
}

// tamper builds every case. Line numbers in the manifest count from 1.
func tamper(t *testing.T, good map[string][]byte, bk *bank.Keys) []tamperCase {
	var cases []tamperCase
	add := func(file, base, change string, complete bool, tr transcript, idx int, step, errText string) {
		cases = append(cases, tamperCase{File: file, Base: base, Change: change, Complete: complete,
			Line: idx + 1, Step: step, Error: errText, data: tr.bytes()})
	}
	a, am, b, c, d, dm := linesOf(good[exWithdrawPay]), linesOf(good[exMerchantPay]), linesOf(good[exChange]),
		linesOf(good[exDoubleSpend]), linesOf(good[exNetBill]), linesOf(good[exMerchantNetBill])

	// --- e-cash: withdraw and pay
	aReq, aSealed, aRcpt := a.find(t, "payment-request", 0), a.find(t, "sealed-payment", 0), a.find(t, "deposit-receipt", 0)
	receipt, err := ecash.DecodeDepositReceipt(a.data(t, aRcpt))
	if err != nil {
		t.Fatal(err)
	}
	coinLine := map[ecash.Hash]int{}
	for i := range a {
		if rec(t, a[i]).Step == "coin" {
			cn, err := ecash.DecodeCoin(a.data(t, i))
			if err != nil {
				t.Fatal(err)
			}
			coinLine[cn.ID()] = i
		}
	}
	paidCoin := coinLine[receipt.Coins[0]]

	{
		tr := a.clone()
		pr, err := ecash.DecodePaymentRequest(tr.data(t, aReq))
		if err != nil {
			t.Fatal(err)
		}
		pr.Amount.Value++
		tr[aReq] = withData(t, tr[aReq], pr.Body())
		add("amount-in-request.jsonl", exWithdrawPay, "the payment request's amount raised by one cent (the recorded merchant signature no longer verifies)", false,
			tr, aReq, "payment-request", "the merchant signature does not verify")
	}
	{
		tr := a.clone()
		r := rec(t, tr[paidCoin])
		r.Note = "EUR:2.00"
		tr[paidCoin] = lineOf(t, r)
		add("amount-in-coin-note.jsonl", exWithdrawPay, "a coin's stated value changed", false, tr, paidCoin, "coin", "the note says the coin is worth")
	}
	{
		tr := a.clone()
		r := *receipt
		r.Total.Value++
		tr[aRcpt] = withData(t, tr[aRcpt], r.Encode())
		add("amount-in-receipt.jsonl", exWithdrawPay, "the receipt's total raised by one cent", false, tr, aRcpt, "deposit-receipt", "the bank's signature")
	}
	{
		tr := a.clone()
		tr[aRcpt] = withData(t, tr[aRcpt], flipLast(tr.data(t, aRcpt)))
		add("receipt-signature-byte.jsonl", exWithdrawPay, "one bit of the bank's signature on the receipt flipped", false, tr, aRcpt, "deposit-receipt", "the bank's signature")
	}
	rsaCoin := -1
	for id, i := range coinLine {
		if rec(t, a[i]).Note == "EUR:1.00" {
			rsaCoin = coinLine[id]
		}
	}
	{
		tr := a.clone()
		cn, err := ecash.DecodeCoin(tr.data(t, rsaCoin))
		if err != nil {
			t.Fatal(err)
		}
		cn.Sig = flipLast(cn.Sig)
		tr[rsaCoin] = withData(t, tr[rsaCoin], cn.Encode())
		add("coin-signature-byte.jsonl", exWithdrawPay, "one bit of the bank's RSA signature on a coin flipped", false, tr, rsaCoin, "coin", "not a coin the bank issued")
	}
	{
		tr := a.clone()
		cn, err := ecash.DecodeCoin(tr.data(t, paidCoin))
		if err != nil {
			t.Fatal(err)
		}
		cn.Pub = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, 32)).Public().(ed25519.PublicKey)
		tr[paidCoin] = withData(t, tr[paidCoin], cn.Encode())
		add("forged-coin.jsonl", exWithdrawPay, "a coin's key replaced by one the bank never signed", false, tr, paidCoin, "coin", "not a coin the bank issued")
	}
	{
		tr := a.clone()
		cn, err := ecash.DecodeCoin(tr.data(t, paidCoin))
		if err != nil {
			t.Fatal(err)
		}
		cn.Denom[0] ^= 1
		tr[paidCoin] = withData(t, tr[paidCoin], cn.Encode())
		add("unknown-denomination.jsonl", exWithdrawPay, "a coin of a denomination the key set does not list", false, tr, paidCoin, "coin", "in no key set")
	}
	bRcpt := b.find(t, "deposit-receipt", 0)
	{
		tr := a.clone()
		tr[aRcpt] = withData(t, tr[aRcpt], b.data(t, bRcpt))
		add("receipt-for-another-request.jsonl", exWithdrawPay, "the receipt replaced by a genuine one for another payment request", false,
			tr, aRcpt, "deposit-receipt", "the receipt is for another payment request")
	}
	{
		tr := am.clone()
		i := tr.find(t, "deposit-receipt", 0)
		tr[i] = withData(t, tr[i], b.data(t, bRcpt))
		add("merchant-receipt-for-another-request.jsonl", exMerchantPay, "the merchant's receipt replaced by a genuine one for another payment request", false,
			tr, i, "deposit-receipt", "the receipt is for another payment request")
	}
	add("receipt-before-payment.jsonl", exWithdrawPay, "the receipt moved before the sealed payment it answers", false,
		a.move(aRcpt, aSealed), aSealed, "deposit-receipt", "no sealed payment for order")
	add("removed-coin.jsonl", exWithdrawPay, "the line of a coin the receipt spends removed", true,
		a.remove(paidCoin), aRcpt-1, "deposit-receipt", "not issued in this transcript")
	add("coin-after-receipt.jsonl", exWithdrawPay, "the line of a coin the receipt spends moved after the receipt", false,
		a.move(paidCoin, len(a)), len(a)-1, "coin", "before it was issued here")
	add("removed-payment-request.jsonl", exWithdrawPay, "the payment request removed", true,
		a.remove(aReq), aSealed-1, "sealed-payment", "payment request of the order")
	{
		tr := a.clone()
		r := rec(t, tr[aReq])
		var dec map[string]any
		if err := json.Unmarshal(r.Decoded, &dec); err != nil {
			t.Fatal(err)
		}
		dec["amount"] = "EUR:0.01"
		r.Decoded, _ = json.Marshal(dec)
		tr[aReq] = lineOf(t, r)
		add("decoded-disagrees.jsonl", exWithdrawPay, "the decoded amount of the payment request changed, its bytes not", false,
			tr, aReq, "payment-request", "the decoded fields disagree with the data: decoded.amount")
	}
	{
		tr := a.clone()
		r := rec(t, tr[paidCoin])
		r.Data += "00"
		r.Decoded = nil
		tr[paidCoin] = lineOf(t, r)
		add("not-canonical.jsonl", exWithdrawPay, "a byte appended to a coin's encoding", false, tr, paidCoin, "coin", "does not decode")
	}
	{
		tr := a.clone()
		r := rec(t, tr[paidCoin])
		r.Step = "coin-v2"
		tr[paidCoin] = lineOf(t, r)
		add("unknown-step.jsonl", exWithdrawPay, "a line's step renamed", false, tr, paidCoin, "coin-v2", "unknown step")
	}
	{
		tr := a.clone()
		tr[aSealed] = tr[aSealed][:len(tr[aSealed])/2]
		add("truncated-line.jsonl", exWithdrawPay, "a line cut in half", false, tr, aSealed, "", "not a transcript record")
	}

	// --- change
	{
		i := b.find(t, "swap-request", 0)
		tr := b.clone()
		sw, err := ecash.DecodeSwapRequest(tr.data(t, i))
		if err != nil {
			t.Fatal(err)
		}
		sw.Inputs[0].CoinSig = flipLast(sw.Inputs[0].CoinSig)
		tr[i] = withData(t, tr[i], sw.Body())
		add("swap-input-signature.jsonl", exChange, "one bit of an input coin's signature on the swap flipped", false, tr, i, "swap-request", "input 1: the coin's signature on its swap permission")

		tr = b.clone()
		sw, _ = ecash.DecodeSwapRequest(tr.data(t, i))
		sw.Outputs = append(sw.Outputs, sw.Outputs[0])
		tr[i] = withData(t, tr[i], sw.Body())
		add("swap-output-added.jsonl", exChange, "an output added to the swap (the inputs signed the outputs hash)", false, tr, i, "swap-request", "swap permission does not verify")
	}

	// --- double spend
	{
		i := c.find(t, "double-spend-proof", 0)
		tr := c.clone()
		tr[i] = withData(t, tr[i], flipLast(tr.data(t, i)))
		add("double-spend-proof-byte.jsonl", exDoubleSpend, "one bit of the bank's signature on the double-spend proof flipped", false, tr, i, "double-spend-proof", "the proof does not verify")
		add("double-spend-proof-alone.jsonl", exDoubleSpend, "the sealed payment the proof refuses removed", false,
			c.remove(c.find(t, "sealed-payment", -1)), i-1, "double-spend-proof", "no payment or swap is in progress")
	}

	// --- NetBill, the checkbook's side
	dEPO, dRcpt := d.find(t, "signed-epo", 0), d.find(t, "epo-receipt", 0)
	{
		tr := d.clone()
		e, err := echeck.DecodeSignedEPO(tr.data(t, dEPO))
		if err != nil {
			t.Fatal(err)
		}
		e.Price.Value--
		tr[dEPO] = withData(t, tr[dEPO], e.Encode())
		add("epo-price.jsonl", exNetBill, "the price in the signed EPO lowered by one cent", false, tr, dEPO, "signed-epo", "the customer's signature")
	}
	approved, err := echeck.DecodeReceipt(d.data(t, dRcpt))
	if err != nil {
		t.Fatal(err)
	}
	{
		tr := d.clone()
		r := *approved
		r.Key[0] ^= 1
		tr[dRcpt] = withData(t, tr[dRcpt], r.Encode())
		add("epo-receipt-key.jsonl", exNetBill, "the goods key K in the bank's receipt changed", false, tr, dRcpt, "epo-receipt", "the bank's signature")
	}
	add("epo-receipt-before-epo.jsonl", exNetBill, "the bank's receipt moved before the EPO it decides", false,
		d.move(dRcpt, dEPO), dEPO+1, "signed-epo", "recorded after the bank's receipt deciding it")

	// --- NetBill, the till's side
	{
		mEPO, mEnd, mRcpt, mQuote := dm.find(t, "signed-epo", 0), dm.find(t, "endorsement", 0), dm.find(t, "epo-receipt", 0), dm.find(t, "quote", 0)
		add("merchant-endorsement-before-epo.jsonl", exMerchantNetBill, "the endorsement moved before the customer's EPO", false,
			dm.move(mEnd, mEPO), mEPO, "endorsement", "no EPO signed by the customer precedes this endorsement")
		add("merchant-receipt-without-endorsement.jsonl", exMerchantNetBill, "the merchant's endorsement removed", false,
			dm.remove(mEnd), mRcpt-1, "epo-receipt", "which the merchant never endorsed")
		add("merchant-quote-without-request.jsonl", exMerchantNetBill, "the price request removed", false,
			dm.remove(dm.find(t, "price-request", 0)), mQuote-1, "quote", "no price request")
		tr := dm.clone()
		tr[mQuote] = withData(t, tr[mQuote], flipLast(tr.data(t, mQuote)))
		add("merchant-quote-signature-byte.jsonl", exMerchantNetBill, "one bit of the merchant's signature on a quote flipped", false, tr, mQuote, "quote", "the merchant's signature")
	}

	// --- a dishonest bank: records it signed with its own key that contradict
	// one another or what its users signed.
	{
		tr := a.clone()
		r := *receipt
		r.Coins = append([]ecash.Hash(nil), r.Coins...)
		for id, i := range coinLine {
			if rec(t, a[i]).Note != rec(t, a[coinLine[r.Coins[0]]]).Note && !containsHash(r.Coins, id) {
				r.Coins[0] = id
				break
			}
		}
		r.Sig = ecash.SignBody(bk.Signing, r.Body())
		tr[aRcpt] = withData(t, tr[aRcpt], r.Encode())
		add("bank-coins-dont-add-up.jsonl", exWithdrawPay, "the bank signs a receipt listing a wallet coin of another value", false, tr, aRcpt, "deposit-receipt", "the receipt's coins pay")
	}
	{
		tr := a.clone()
		r := *receipt
		other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x43}, 32))
		r.SignerPub = other.Public().(ed25519.PublicKey)
		r.Sig = ecash.SignBody(other, r.Body())
		tr[aRcpt] = withData(t, tr[aRcpt], r.Encode())
		add("bank-unknown-signer.jsonl", exWithdrawPay, "the receipt signed by a key the key set does not list", false, tr, aRcpt, "deposit-receipt", "the bank's signature: ecash: signed by a key the bank's key set does not list")
	}
	{
		first, second := b.find(t, "deposit-receipt", 0), b.find(t, "deposit-receipt", 1)
		r1, err := ecash.DecodeDepositReceipt(b.data(t, first))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ecash.DecodeDepositReceipt(b.data(t, second))
		if err != nil {
			t.Fatal(err)
		}
		r2.Coins = append([]ecash.Hash{r1.Coins[0]}, r2.Coins[1:]...)
		r2.Sig = ecash.SignBody(bk.Signing, r2.Body())
		tr := b.clone()
		tr[second] = withData(t, tr[second], r2.Encode())
		add("bank-coin-spent-twice.jsonl", exChange, "the bank signs a receipt for a coin it already took in an earlier payment", false, tr, second, "deposit-receipt", "was already spent at line")
	}
	{
		tr := d.clone()
		r := *approved
		r.Decision, r.Reason, r.Key = echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}
		r.Sign(bk.Signing)
		dup := rec(t, tr[dRcpt])
		dup.Data = hex.EncodeToString(r.Encode())
		tr = append(tr[:dRcpt+1:dRcpt+1], append(transcript{lineOf(t, dup)}, tr[dRcpt+1:]...)...)
		add("bank-two-outcomes.jsonl", exNetBill, "a second receipt, a decline, for an EPOID the bank approved", false, tr, dRcpt+1, "epo-receipt", "two different outcomes")
	}
	{
		tr := d.clone()
		r := *approved
		r.Key[31] ^= 1
		r.Sign(bk.Signing)
		tr[dRcpt] = withData(t, tr[dRcpt], r.Encode())
		add("bank-wrong-key.jsonl", exNetBill, "the bank signs an approval releasing a key other than the committed one", false, tr, dRcpt, "epo-receipt", "does not match the commitment the customer signed")
	}
	{
		tr := d.clone()
		r := *approved
		r.EPOHash[0] ^= 1
		r.Sign(bk.Signing)
		tr[dRcpt] = withData(t, tr[dRcpt], r.Encode())
		add("bank-receipt-other-epo.jsonl", exNetBill, "the bank's receipt names another EPO hash under the same EPOID", false, tr, dRcpt, "epo-receipt", "decides another EPO than the one the customer signed")
	}
	return cases
}

func containsHash(hs []ecash.Hash, h ecash.Hash) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// TestTamperedTranscripts: every committed tampered transcript fails, first
// at the line and step its manifest names, with its error.
func TestTamperedTranscripts(t *testing.T) {
	ks, _ := loadExamples(t)
	dir := filepath.Join(transcriptsDir, tamperedDir)
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []tamperCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(files) != len(cases) || len(cases) < 20 {
		t.Fatalf("%d tampered transcripts, %d in the manifest", len(files), len(cases))
	}
	for _, c := range cases {
		t.Run(c.File, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join(dir, c.File))
			if err != nil {
				t.Fatal(err)
			}
			checkTampered(t, c, data, ks)
		})
	}
}
