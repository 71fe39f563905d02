package ecash_test

// The hex in docs/PROTOCOL.md §7 and §8.5 is tied to the code here: each
// vector is rebuilt from the documented inputs with the package's API (not
// read from testdata/ecash/vectors.json) and compared with the doc's
// bytes, so a doc block that drifts from the code fails.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

func protocolDoc(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// section is doc from the heading that starts with title to the next
// heading of the same level.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+title)
	if i < 0 {
		t.Fatalf("%q not found in docs/PROTOCOL.md", title)
	}
	level := title[:strings.Index(title, " ")+1]
	rest := doc[i+1:]
	if j := strings.Index(rest[1:], "\n"+level); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

// docHex reads the fenced block after label: the first hex word of each
// line, up to a line that does not start with hex.
func docHex(t *testing.T, doc, label string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(fenced(t, doc, label), "\n") {
		word, _, _ := strings.Cut(line, " ")
		if word == "" || strings.Trim(word, "0123456789abcdef") != "" {
			break
		}
		b.WriteString(word)
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	return out
}

// rfc9474Key is the RFC 9474 test key, §7's denomination key.
func rfc9474Key(t *testing.T) ecash.DenomPrivateKey {
	t.Helper()
	raw, err := os.ReadFile("../testdata/ecash/rfc9474.json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	bi := func(s string) *big.Int { n, _ := new(big.Int).SetString(s, 16); return n }
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: bi(v["n"]), E: int(bi(v["e"]).Int64())}, D: bi(v["d"]), Primes: []*big.Int{bi(v["p"]), bi(v["q"])}}
	k.Precompute()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ecash.RSAScheme{}.ParsePrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func TestProtocolDocVectorsSection7(t *testing.T) {
	t.Parallel()
	s7 := section(t, protocolDoc(t), "## 7. Vectors")

	if got, want := amountBytes(ecash.MustParseAmount("EUR:12.50")), docHex(t, s7, "### Amount EUR:12.50"); !bytes.Equal(got, want) {
		t.Errorf("amount:\n code %x\n doc  %x", got, want)
	}

	// Payment request from the documented inputs.
	master := ed25519.NewKeyFromSeed(seed(1))
	merchant := ed25519.NewKeyFromSeed(seed(3))
	created := time.UnixMilli(0x1959533fa87)
	pr := &ecash.PaymentRequest{
		BankID:          sha256.Sum256(master.Public().(ed25519.PublicKey)),
		MerchantAccount: 7,
		MerchantPub:     merchant.Public().(ed25519.PublicKey),
		OrderID:         "order-0001",
		Amount:          ecash.MustParseAmount("EUR:10.00"),
		SummaryHash:     sha256.Sum256([]byte("2 x coffee")),
		CreatedAt:       created,
		ExpiresAt:       created.Add(15 * time.Minute),
	}
	docBody := docHex(t, s7, "### Payment request")
	if !bytes.Equal(pr.Body(), docBody) {
		t.Errorf("payment request body:\n code %x\n doc  %x", pr.Body(), docBody)
	}
	if len(docBody) != 181 {
		t.Errorf("payment request body is %d bytes, doc says 181", len(docBody))
	}
	docHash := docHex(t, s7, "hash = SHA-256(body):")
	if h := pr.Hash(); !bytes.Equal(h[:], docHash) {
		t.Errorf("payment request hash: code %x doc %x", h, docHash)
	}
	docSig := docHex(t, s7, "merchant signature (Ed25519, merchant seed 03…03):")
	if sig := ecash.SignBody(merchant, pr.Body()); !bytes.Equal(sig, docSig) {
		t.Errorf("merchant sig: code %x doc %x", sig, docSig)
	}

	// Payment offer: the doc's URI carries the request above.
	uri := strings.ReplaceAll(fenced(t, s7, "URI (433 bytes):"), "\n", "")
	if len(uri) != 433 {
		t.Errorf("URI is %d chars, doc says 433", len(uri))
	}
	off, err := ecash.ParsePaymentURI(uri)
	if err != nil {
		t.Fatalf("ParsePaymentURI(doc URI): %v", err)
	}
	if !bytes.Equal(off.Request, pr.Body()) {
		t.Errorf("URI's request differs from §7 payment request")
	}

	// Coin 0: derive planchet 0 of wallet seed 06…06, blind with the RFC
	// 9474 key, sign, unblind, encode: compare with the doc.
	sk := rfc9474Key(t)
	pk := sk.Public()
	value := ecash.MustParseAmount("EUR:5.00")
	denom := ecash.DenominationID(value, pk)
	ps, err := ecash.DerivePlanchet(seed(6), 0)
	if err != nil {
		t.Fatal(err)
	}
	blinded, st, err := pk.Blind(ps.BlindSeed, nil, ps.CoinPub())
	if err != nil {
		t.Fatal(err)
	}
	bs, err := sk.BlindSign(blinded)
	if err != nil {
		t.Fatal(err)
	}
	csig, err := st.Unblind(bs)
	if err != nil {
		t.Fatal(err)
	}
	coin := ecash.Coin{Denom: denom, Pub: ps.CoinPub(), Sig: csig}
	docCoin := docHex(t, s7, "encoding (633 bytes")
	if !bytes.Equal(coin.Encode(), docCoin) {
		t.Errorf("coin 0 encoding:\n code %x\n doc  %x", coin.Encode(), docCoin)
	}
	if len(docCoin) != 633 {
		t.Errorf("coin is %d bytes, doc says 633", len(docCoin))
	}
	dc, err := ecash.DecodeCoin(docCoin)
	if err != nil {
		t.Fatalf("DecodeCoin(doc): %v", err)
	}
	if err := dc.Verify(pk); err != nil {
		t.Errorf("doc coin does not verify under the RFC 9474 key: %v", err)
	}
	docID := docHex(t, s7, "coin id = SHA-256(coin pub):")
	if id := coin.ID(); !bytes.Equal(id[:], docID) {
		t.Errorf("coin id: code %x doc %x", id, docID)
	}

	// Deposit permission (coin 0).
	dp := &ecash.DepositPermission{Coin: coin, PaymentHash: pr.Hash(), MerchantAccount: 7, Value: value, Timestamp: created.Add(time.Minute)}
	docDP := docHex(t, s7, "Body signed by the coin key (162 bytes):")
	if !bytes.Equal(dp.Body(), docDP) {
		t.Errorf("deposit permission body:\n code %x\n doc  %x", dp.Body(), docDP)
	}
	dp.CoinSig = ecash.SignBody(ps.CoinKey, dp.Body())
	docCS := docHex(t, s7, "coin signature:")
	if !bytes.Equal(dp.CoinSig, docCS) {
		t.Errorf("coin signature: code %x doc %x", dp.CoinSig, docCS)
	}
	docSigned := docHex(t, s7, "signed form (tag `signed-deposit-permission`, 781 bytes):")
	if !bytes.Equal(dp.Encode(), docSigned) {
		t.Errorf("signed deposit permission (%d vs %d bytes):\n code %x\n doc  %x", len(dp.Encode()), len(docSigned), dp.Encode(), docSigned)
	}
	got, err := ecash.DecodeDepositPermission(docSigned)
	if err != nil {
		t.Fatalf("DecodeDepositPermission(doc): %v", err)
	}
	if err := got.Verify(); err != nil {
		t.Errorf("doc deposit permission does not verify: %v", err)
	}
}

// fenced is the text of the fenced block after label.
func fenced(t *testing.T, doc, label string) string {
	t.Helper()
	i := strings.Index(doc, label)
	if i < 0 {
		t.Fatalf("%q not found", label)
	}
	rest := doc[i:]
	j := strings.Index(rest, "```\n")
	if j < 0 {
		t.Fatalf("no block after %q", label)
	}
	rest = rest[j+4:]
	return rest[:strings.Index(rest, "```")]
}

// TestProtocolDocCSVector checks §8.5's table: a label in the first 17
// columns, hex after it, a continued value under an empty label.
func TestProtocolDocCSVector(t *testing.T) {
	t.Parallel()
	blk := fenced(t, protocolDoc(t), "### 8.5 Vector")
	fields := map[string]string{}
	last := ""
	for _, line := range strings.Split(blk, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		label := strings.TrimSpace(line[:17])
		val := strings.ReplaceAll(strings.TrimSpace(line[17:]), " ", "")
		if label == "" {
			label = last
		}
		fields[label] += val
		last = label
	}
	h := func(k string) []byte {
		b, err := hex.DecodeString(fields[k])
		if err != nil || len(b) == 0 {
			t.Fatalf("field %q: %q %v", k, fields[k], err)
		}
		return b
	}
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []byte) {
		if !bytes.Equal(got, h(name)) {
			t.Errorf("%s:\n code %x\n doc  %x", name, got, h(name))
		}
	}
	check("private key", sk.Bytes())
	check("public key", sk.Public().Bytes())
	ps, err := ecash.DerivePlanchet(seed(6), 0)
	if err != nil {
		t.Fatal(err)
	}
	check("blind seed", ps.BlindSeed[:])
	check("coin pub (msg)", ps.CoinPub())
	nonce := ecash.CSWithdrawNonce(ps.BlindSeed)
	check("nonce", nonce[:])
	prep, err := sk.Prepare(nonce[:])
	if err != nil {
		t.Fatal(err)
	}
	check("R0 || R1", prep)
	blinded, st, err := sk.Public().Blind(ps.BlindSeed, prep, ps.CoinPub())
	if err != nil {
		t.Fatal(err)
	}
	check("blinded message", blinded)
	bs, err := sk.BlindSign(blinded)
	if err != nil {
		t.Fatal(err)
	}
	check("blind signature", bs)
	sig, err := st.Unblind(bs)
	if err != nil {
		t.Fatal(err)
	}
	check("signature", sig)
	if err := sk.Public().Verify(ps.CoinPub(), h("signature")); err != nil {
		t.Errorf("doc CS signature does not verify: %v", err)
	}
}
