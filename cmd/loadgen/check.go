package main

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// The check scenario: NetBill (docs/PROTOCOL.md §9) end to end through the
// merchant's till. A wallet pays from its bank account with a signed
// electronic payment order (EPO), of one of two kinds:
//
//   - check: a plain signed check for one cent, as wallet.WriteCheck writes
//     it: the wallet seals the private part (account, memo, reply key) to
//     the bank and signs; the till verifies, endorses and forwards it; the
//     bank decides, signs the receipt and seals the customer's block; the
//     till and the wallet verify the receipt, and the wallet opens its
//     block. One call to the merchant, one from the merchant to the bank.
//   - goods: a purchase of a small product (goodsSize bytes, one cent), as
//     wallet.Buy makes it: price request and signed quote, the goods
//     encrypted under a key K the till commits to, then the EPO as above,
//     endorsed with K sealed to the bank, which releases K in its receipt;
//     the wallet checks K against the commitment and decrypts. Three calls
//     to the merchant.
//
// One operation is one EPO; the scenario counts checks, not coins.

// Goods the till sells in the goods variant.
const (
	goodsProduct = "loadgen-goods"
	goodsSize    = 1024 // bytes: a small digital product
)

// parseEPOKind reads --epo.
func parseEPOKind(s string) (echeck.Kind, bool) {
	switch s {
	case "check":
		return echeck.KindCheck, true
	case "goods":
		return echeck.KindGoods, true
	}
	return 0, false
}

// writeCatalogue writes a till catalogue of one product, goodsProduct, of
// goodsSize random bytes at price, into dir.
func writeCatalogue(dir string, price ecash.Amount) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	goods := make([]byte, goodsSize)
	if _, err := rand.Read(goods); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "goods.bin"), goods, 0o600); err != nil {
		return err
	}
	cat, err := json.Marshal(map[string]any{"products": []map[string]string{{
		"id": goodsProduct, "file": "goods.bin", "price": price.String(), "description": "loadgen's product",
	}}})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, merchant.CatalogueFile), cat, 0o600)
}

// learnMerchant asks the till for its account and key (as wallet.WriteCheck
// does before every check; a wallet may keep them, and loadgen does, once
// per wallet before the timed phase). It also opens the connection. For
// goods, the till must sell goodsProduct (a merchantd loadgen did not
// start needs it in its catalogue).
func (w *simWallet) learnMerchant(ctx context.Context, kind echeck.Kind) error {
	info, err := w.merchant.ListProducts(ctx, &pb.ListProductsRequest{})
	if err != nil {
		return fmt.Errorf("listing products: %w", err)
	}
	if err := ecash.CheckEd25519Key(info.MerchantKey); err != nil || info.MerchantAccount == 0 {
		return fmt.Errorf("the merchant names no usable account and key")
	}
	if kind == echeck.KindGoods && !slices.ContainsFunc(info.Products, func(p *pb.Product) bool { return p.Id == goodsProduct }) {
		return fmt.Errorf("the merchant's till sells no product %q, which --epo goods buys", goodsProduct)
	}
	w.merchantAccount, w.merchantPub = info.MerchantAccount, ed25519.PublicKey(info.MerchantKey)
	return nil
}

// checkNext runs one payment order of the wallet's kind.
func (w *simWallet) checkNext(ctx context.Context, kind echeck.Kind) error {
	if kind == echeck.KindGoods {
		return w.buy(ctx)
	}
	return w.writeCheck(ctx)
}

// writeCheck writes a one-cent check to the merchant and hands it to the
// till, which endorses and deposits it; it verifies the bank's receipt and
// opens its customer block.
func (w *simWallet) writeCheck(ctx context.Context) error {
	now := time.Now()
	id, err := echeck.NewCheckEPOID(rand.Reader, w.merchantAccount, now)
	if err != nil {
		return err
	}
	epo := echeck.EPO{
		Kind: echeck.KindCheck, Customer: w.acctPub(), Price: w.denom.Value,
		MerchantAccount: w.merchantAccount, MerchantPub: w.merchantPub,
		EPOID: id, ExpiresAt: id.Timestamp.Add(wallet.EPOLifetime),
	}
	signed, reply, err := w.signEPO(epo)
	if err != nil {
		return err
	}
	resp, err := w.merchant.WriteCheck(ctx, &pb.SubmitEPORequest{SignedEpo: signed.Encode()})
	if err != nil {
		return fmt.Errorf("write check: %w", rateLimitHint(err, roleMerchant))
	}
	return w.acceptEPO(signed, reply, nil, resp)
}

// buy buys the till's product: price request, quote, encrypted goods, the
// signed EPO, and the receipt with K, which opens the goods.
func (w *simWallet) buy(ctx context.Context) error {
	req := &echeck.PriceRequest{Customer: w.acctPub(), ProductID: goodsProduct, Bid: ecash.Amount{Currency: w.ks.Currency}}
	if _, err := rand.Read(req.TID[:]); err != nil {
		return err
	}
	qresp, err := w.merchant.Quote(ctx, &pb.QuoteRequest{PriceRequest: req.Encode()})
	if err != nil {
		return fmt.Errorf("quote: %w", rateLimitHint(err, roleMerchant))
	}
	q, err := echeck.DecodeQuote(qresp.Quote)
	if err == nil {
		err = q.Verify()
	}
	if err == nil {
		err = q.CheckRequest(req, time.Now())
	}
	if err != nil {
		return fmt.Errorf("quote: %w", err)
	}
	gresp, err := w.merchant.GetGoods(ctx, &pb.GetGoodsRequest{Quote: qresp.Quote})
	if err != nil {
		return fmt.Errorf("goods: %w", rateLimitHint(err, roleMerchant))
	}
	d, err := echeck.DecodeDelivery(gresp.Delivery)
	if err == nil {
		err = d.Check()
	}
	if err == nil && (d.TID != req.TID || d.EPOID.Merchant != q.MerchantAccount) {
		err = fmt.Errorf("%w: delivery answers another quote", echeck.ErrMismatch)
	}
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	now := time.Now()
	start := now
	if d.EPOID.Timestamp.After(start) {
		start = d.EPOID.Timestamp
	}
	epo := echeck.NewGoodsEPO(w.acctPub(), q, d, start.Add(wallet.EPOLifetime))
	if err := epo.Validate(now); err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	signed, reply, err := w.signEPO(epo)
	if err != nil {
		return err
	}
	resp, err := w.merchant.SubmitEPO(ctx, &pb.SubmitEPORequest{SignedEpo: signed.Encode()})
	if err != nil {
		return fmt.Errorf("submit EPO: %w", rateLimitHint(err, roleMerchant))
	}
	return w.acceptEPO(signed, reply, d.Ciphertext, resp)
}

// signEPO seals the private part (account, memo, a fresh X25519 reply key,
// a nonce) to the bank and signs the order with the account key.
func (w *simWallet) signEPO(epo echeck.EPO) (*echeck.SignedEPO, *ecdh.PrivateKey, error) {
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	priv := echeck.EPOPrivate{Account: w.account, Memo: "loadgen"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	if _, err := rand.Read(priv.Nonce[:]); err != nil {
		return nil, nil, err
	}
	signed, err := echeck.NewSignedEPO(epo, priv, w.ks.HPKEPub, w.acctKey)
	return signed, reply, err
}

// acceptEPO verifies the bank's receipt as the checkbook does: signed by
// the key set's signing key, deciding exactly this EPO, approving it; for
// goods, K against the commitment and the goods decrypted; then it opens
// the customer block.
func (w *simWallet) acceptEPO(epo *echeck.SignedEPO, reply *ecdh.PrivateKey, ciphertext []byte, resp *pb.SubmitEPOResponse) error {
	r, err := echeck.DecodeReceipt(resp.Receipt)
	if err == nil {
		err = w.ks.CheckSigner(r.SignerPub, r.DecidedAt)
	}
	if err == nil {
		err = r.Verify(r.SignerPub)
	}
	if err == nil {
		err = r.CheckEPO(epo)
	}
	if err != nil {
		return fmt.Errorf("the receipt: %w", err)
	}
	if r.Decision != echeck.Approved {
		return fmt.Errorf("the bank declined payment order %s: %s", r.EPOID, r.Reason)
	}
	if epo.Kind == echeck.KindGoods {
		if err := r.CheckKey(epo.KeyCommit); err != nil {
			return fmt.Errorf("the receipt: %w", err)
		}
		if echeck.GoodsHash(ciphertext) != epo.GoodsHash {
			return fmt.Errorf("the goods are not the ones signed for")
		}
		if _, err := echeck.DecryptGoods(r.Key, epo.EPOID, ciphertext); err != nil {
			return fmt.Errorf("the goods: %w", err)
		}
	}
	b, err := echeck.OpenCustomerBlock(reply, r.Hash(), resp.CustomerBlock)
	if err != nil {
		return err
	}
	if !b.EPOID.Equal(epo.EPOID) || b.Account != w.account {
		return fmt.Errorf("the customer block is for another payment order")
	}
	return nil
}

// newCheckLimitOp returns the cryptography of one payment order of kind,
// every step the wallet, the merchant and the bank must do, in order,
// without the network and the stores:
//
//	goods only: the merchant signs a quote, the wallet and (when the goods
//	  are asked for) the merchant verify it; the merchant encrypts the goods
//	  under a fresh K (ChaCha20-Poly1305), hashes them and commits to K; the
//	  wallet checks the goods hash;
//	wallet: a fresh X25519 reply key, the private part sealed to the bank
//	  (HPKE), the dual signature (Ed25519);
//	merchant: verify the customer's signature and keys; goods: check K
//	  against the commitment and seal K to the bank (HPKE); sign the
//	  endorsement;
//	bank: verify the customer's and the merchant's signatures and keys,
//	  open the private part (HPKE); goods: open K and check it against the
//	  commitment; sign the receipt; seal the customer block (HPKE);
//	merchant, then wallet: verify the receipt (goods: K against the
//	  commitment); the wallet decrypts the goods and opens its block.
//
// Each signature is made and verified once, as the protocol needs. (The
// till verifies the customer's signature twice, in decodeEPO and in
// echeck.NewEndorsement; the bank signs four receipts per order, one for
// each possible outcome, before its commit picks one.)
func newCheckLimitOp(kit *cryptoKit, kind echeck.Kind) (limitOp, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	custKey, err := ecash.DeriveAccountKey(seed)
	if err != nil {
		return nil, err
	}
	custPub := custKey.Public().(ed25519.PublicKey)
	custAccount := bank.FirstUserAccount + 1
	mKey := kit.merchantKey
	mPub := mKey.Public().(ed25519.PublicKey)
	mAccount := kit.merchantAccount
	price := kit.denom.Value
	goods := make([]byte, goodsSize)
	if _, err := rand.Read(goods); err != nil {
		return nil, err
	}
	var serial uint64
	return func(pt *partyTimes) error {
		sw := startStopwatch()
		now := time.Now()
		var epo echeck.EPO
		var (
			goodsKey   [32]byte
			ciphertext []byte
		)
		if kind == echeck.KindGoods {
			// Wallet: the price request.
			req := &echeck.PriceRequest{Customer: custPub, ProductID: goodsProduct, Bid: ecash.Amount{Currency: price.Currency}}
			if _, err := rand.Read(req.TID[:]); err != nil {
				return err
			}
			rawReq := req.Encode()
			sw.lap(&pt.wallet)
			// Merchant: the signed quote.
			r, err := echeck.DecodePriceRequest(rawReq)
			if err != nil {
				return err
			}
			if err := ecash.CheckEd25519Key(r.Customer); err != nil {
				return err
			}
			rawQuote := echeck.NewQuote(r, mAccount, price, now.Add(merchant.QuoteTTL), mKey).Encode()
			sw.lap(&pt.merchant)
			// Wallet: verify the quote.
			q, err := echeck.DecodeQuote(rawQuote)
			if err != nil {
				return err
			}
			if err := q.Verify(); err != nil {
				return err
			}
			if err := q.CheckRequest(req, now); err != nil {
				return err
			}
			sw.lap(&pt.wallet)
			// Merchant: verify its own quote, encrypt the goods, commit to K.
			mq, err := echeck.DecodeQuote(rawQuote)
			if err != nil {
				return err
			}
			if err := mq.Verify(); err != nil {
				return err
			}
			serial++
			d, k, err := echeck.NewDelivery(rand.Reader, echeck.NewEPOID(mAccount, now, serial), mq.TID, goods)
			if err != nil {
				return err
			}
			goodsKey = k
			rawDelivery := d.Encode()
			sw.lap(&pt.merchant)
			// Wallet: check the delivery's goods hash.
			wd, err := echeck.DecodeDelivery(rawDelivery)
			if err != nil {
				return err
			}
			if err := wd.Check(); err != nil {
				return err
			}
			ciphertext = wd.Ciphertext
			epo = echeck.NewGoodsEPO(custPub, q, wd, now.Add(wallet.EPOLifetime))
		} else {
			id, err := echeck.NewCheckEPOID(rand.Reader, mAccount, now)
			if err != nil {
				return err
			}
			epo = echeck.EPO{
				Kind: echeck.KindCheck, Customer: custPub, Price: price, MerchantAccount: mAccount, MerchantPub: mPub,
				EPOID: id, ExpiresAt: id.Timestamp.Add(wallet.EPOLifetime),
			}
		}
		// Wallet: seal the private part, sign.
		if err := epo.Validate(now); err != nil {
			return err
		}
		reply, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		priv := echeck.EPOPrivate{Account: custAccount, Memo: "loadgen"}
		copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
		if _, err := rand.Read(priv.Nonce[:]); err != nil {
			return err
		}
		signed, err := echeck.NewSignedEPO(epo, priv, kit.ks.HPKEPub, custKey)
		if err != nil {
			return err
		}
		rawEPO := signed.Encode()
		sw.lap(&pt.wallet)
		// Merchant: verify the customer's order, endorse it (goods: with K
		// sealed to the bank).
		mepo, err := echeck.DecodeSignedEPO(rawEPO)
		if err != nil {
			return err
		}
		if err := mepo.VerifyCustomer(); err != nil {
			return err
		}
		if err := mepo.Validate(now); err != nil {
			return err
		}
		end := &echeck.Endorsement{EPO: rawEPO, MerchantAccount: mAccount, Memo: "check"}
		if kind == echeck.KindGoods {
			end.Memo = "sale of " + goodsProduct
			if err := echeck.CheckKey(goodsKey, mepo.KeyCommit); err != nil {
				return err
			}
			h := ecash.HashOf(rawEPO)
			if end.SealedKey, err = ecash.Seal(kit.ks.HPKEPub, echeck.InfoGoodsKey, h[:], goodsKey[:]); err != nil {
				return err
			}
		}
		end.MerchantSig = ecash.SignBody(mKey, end.Body())
		rawEnd := end.Encode()
		sw.lap(&pt.merchant)
		// Bank: verify both signatures, open the private part (and K),
		// decide, sign the receipt, seal the customer block.
		bend, err := echeck.DecodeEndorsement(rawEnd)
		if err != nil {
			return err
		}
		bepo, err := bend.Verify(mPub)
		if err != nil {
			return err
		}
		bpriv, err := bepo.OpenPrivate(kit.keys.HPKE)
		if err != nil {
			return err
		}
		if err := bepo.Validate(now); err != nil {
			return err
		}
		var key [32]byte
		if kind == echeck.KindGoods {
			if key, err = bend.OpenKey(kit.keys.HPKE); err != nil {
				return err
			}
		}
		rcpt, err := echeck.NewReceipt(bepo, echeck.Approved, "", key, now, kit.keys.Signing)
		if err != nil {
			return err
		}
		rawRcpt := rcpt.Encode()
		block := &echeck.CustomerBlock{EPOID: rcpt.EPOID, Account: bpriv.Account, NewBalance: price}
		sealedBlock, err := echeck.SealCustomerBlock(bpriv.ReplyKey, ecash.HashOf(rawRcpt), block)
		if err != nil {
			return err
		}
		sw.lap(&pt.bank)
		// Merchant, then wallet: verify the receipt; the wallet opens the
		// goods and its block.
		for _, party := range []*time.Duration{&pt.merchant, &pt.wallet} {
			r, err := echeck.DecodeReceipt(rawRcpt)
			if err != nil {
				return err
			}
			if err := r.Verify(kit.ks.SigningPub); err != nil {
				return err
			}
			if err := r.CheckEPO(signed); err != nil {
				return err
			}
			if kind == echeck.KindGoods {
				if err := r.CheckKey(signed.KeyCommit); err != nil {
					return err
				}
			}
			if party == &pt.wallet {
				if kind == echeck.KindGoods {
					if echeck.GoodsHash(ciphertext) != signed.GoodsHash {
						return fmt.Errorf("goods hash mismatch")
					}
					if _, err := echeck.DecryptGoods(r.Key, signed.EPOID, ciphertext); err != nil {
						return err
					}
				}
				if _, err := echeck.OpenCustomerBlock(reply, r.Hash(), sealedBlock); err != nil {
					return err
				}
			}
			sw.lap(party)
		}
		return nil
	}, nil
}
