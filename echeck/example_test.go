package echeck_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// The eight NetBill steps for one sale of encrypted goods, with every check
// each party makes. In blindbank the messages travel as their Encode()
// bytes; here they are passed directly.
func Example() {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	// Long-term keys: the customer's account key, the merchant's key, the
	// bank's online signing key and HPKE key (both from its key set).
	customerPub, customer, _ := ed25519.GenerateKey(rand.Reader)
	_, merchant, _ := ed25519.GenerateKey(rand.Reader)
	bankSigningPub, bankSigning, _ := ed25519.GenerateKey(rand.Reader)
	bankHPKE, _ := ecdh.X25519().GenerateKey(rand.Reader)

	// 1. Customer → merchant: price request.
	req := &echeck.PriceRequest{Customer: customerPub, ProductID: "song-0001", PRD: []byte("format=flac"),
		Bid: ecash.MustParseAmount("EUR:0")}
	rand.Read(req.TID[:])

	// 2. Merchant → customer: signed quote. The customer checks it.
	quote := echeck.NewQuote(req, 7, ecash.MustParseAmount("EUR:1.50"), now.Add(15*time.Minute), merchant)
	must(quote.Verify())
	must(quote.CheckRequest(req, now))

	// 3–4. The customer asks for the goods; the merchant encrypts them under
	// a fresh K and assigns a globally unique EPOID. It keeps K.
	id := echeck.NewEPOID(7, now.Add(time.Second), 1)
	delivery, key, err := echeck.NewDelivery(rand.Reader, id, req.TID, []byte("la la la"))
	must(err)

	// 5. Customer: check the checksum, then sign the EPO, with the payment
	// instructions sealed to the bank and a reply key for its private block.
	must(delivery.Check())
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
	priv := echeck.EPOPrivate{Account: 42, Memo: "music"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	rand.Read(priv.Nonce[:])
	epo, err := echeck.NewSignedEPO(echeck.NewGoodsEPO(customerPub, quote, delivery, now.Add(time.Hour)),
		priv, bankHPKE.PublicKey().Bytes(), customer)
	must(err)

	// 6. Merchant: check the EPO is its offer, then endorse it with K sealed
	// to the bank. (It cannot read the private part.)
	must(epo.CheckOffer(quote, delivery))
	must(epo.Validate(now.Add(2 * time.Second)))
	endorsement, err := echeck.NewEndorsement(epo, 7, "order 1", &key, bankHPKE.PublicKey().Bytes(), merchant)
	must(err)

	// 7. Bank: verify both signatures, open the private part and K, check K
	// against the commitment, debit and credit atomically, sign the receipt.
	got, err := endorsement.Verify(merchant.Public().(ed25519.PublicKey))
	must(err)
	must(got.Validate(now.Add(3 * time.Second)))
	p, err := got.OpenPrivate(bankHPKE)
	must(err)
	k, err := endorsement.OpenKey(bankHPKE)
	must(err)
	receipt, err := echeck.NewReceipt(got, echeck.Approved, "", k, now.Add(3*time.Second), bankSigning)
	must(err)
	block, err := echeck.SealCustomerBlock(p.ReplyKey, receipt.Hash(),
		&echeck.CustomerBlock{EPOID: got.EPOID, Account: p.Account, NewBalance: ecash.MustParseAmount("EUR:98.50")})
	must(err)

	// 8. The merchant forwards receipt and block; the customer checks the
	// bank's signature and K against the commitment, and decrypts.
	goods, err := receipt.OpenGoods(bankSigningPub, epo, delivery.Ciphertext)
	must(err)
	b, err := echeck.OpenCustomerBlock(reply, receipt.Hash(), block)
	must(err)
	fmt.Printf("%s %s for %s: %q\n", receipt.Decision, receipt.EPOID, receipt.Price, goods)
	fmt.Println("new balance:", b.NewBalance)
	fmt.Println("judge:", echeck.Judge(receipt, epo, delivery.Ciphertext, bankSigningPub).Outcome)
	// Output:
	// approved 7-1741964967000-1 for EUR:1.50: "la la la"
	// new balance: EUR:98.50
	// judge: no fault
}

// A plain signed check: no goods, no key. The customer picks the EPOID.
func ExampleNewCheckEPOID() {
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	customerPub, customer, _ := ed25519.GenerateKey(rand.Reader)
	merchantPub, merchant, _ := ed25519.GenerateKey(rand.Reader)
	bankSigningPub, bankSigning, _ := ed25519.GenerateKey(rand.Reader)
	bankHPKE, _ := ecdh.X25519().GenerateKey(rand.Reader)
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)

	id, err := echeck.NewCheckEPOID(rand.Reader, 7, now)
	if err != nil {
		panic(err)
	}
	check := echeck.EPO{Kind: echeck.KindCheck, Customer: customerPub, ProductID: "invoice 2025-17",
		Price: ecash.MustParseAmount("EUR:25"), MerchantAccount: 7, MerchantPub: merchantPub,
		EPOID: id, ExpiresAt: now.Add(7 * 24 * time.Hour)}
	priv := echeck.EPOPrivate{Account: 42, Memo: "rent"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	signed, err := echeck.NewSignedEPO(check, priv, bankHPKE.PublicKey().Bytes(), customer)
	if err != nil {
		panic(err)
	}
	endorsement, err := echeck.NewEndorsement(signed, 7, "deposit", nil, bankHPKE.PublicKey().Bytes(), merchant)
	if err != nil {
		panic(err)
	}
	got, err := endorsement.Verify(merchantPub)
	if err != nil {
		panic(err)
	}
	receipt, err := echeck.NewReceipt(got, echeck.Approved, "", [32]byte{}, now.Add(time.Minute), bankSigning)
	if err != nil {
		panic(err)
	}
	fmt.Println(receipt.Verify(bankSigningPub) == nil, receipt.Kind, receipt.Decision, receipt.Price, id.Serial>>63)
	// Output: true check approved EUR:25.00 1
}
