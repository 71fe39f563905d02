package auditcmd

import (
	"bytes"

	"github.com/blindbank/blindbank/ecash"
)

// Refunds in a transcript. A merchant records its signed refund request and
// the bank's receipt; a wallet records the receipts it fetched before
// collecting a refund, then a swap whose credit inputs spend what the
// receipts restored (ecash.CreditAccount).

// refundState is what a party's refund lines established.
type refundState struct {
	requests map[ecash.Hash]int                   // refund hash → line of the merchant's request
	receipts map[ecash.Hash][]byte                // refund hash → receipt bytes
	restored map[ecash.Hash]uint64                // coin → value refunds restored to it
	used     map[ecash.Hash]map[ecash.Hash]uint64 // coin → swap body hash → credit it spent
}

func (s *partyState) refunds() *refundState {
	if s.refund == nil {
		s.refund = &refundState{requests: map[ecash.Hash]int{}, receipts: map[ecash.Hash][]byte{},
			restored: map[ecash.Hash]uint64{}, used: map[ecash.Hash]map[ecash.Hash]uint64{}}
	}
	return s.refund
}

// refundRequest: a merchant's signed refund of one of its payments.
func (s *partyState) refundRequest(c *lineCtx) error {
	r, err := ecash.DecodeRefundRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if s.isWallet() {
		return failf("a refund request in a wallet's transcript: only merchants refund")
	}
	if r.Amount.Currency != c.v.keys.Currency() {
		return failf("a refund in %s at a %s bank", r.Amount.Currency, c.v.keys.Currency())
	}
	pr := s.payReqHash[r.PaymentHash]
	if pr == nil {
		if err := c.missing("the payment request a refund refunds is not in this transcript"); err != nil {
			return err
		}
	} else {
		if err := r.Verify(pr.pr.MerchantPub); err != nil {
			return failf("the merchant's signature (the key of its payment request, line %d): %v", pr.line, err)
		}
		if r.MerchantAccount != pr.pr.MerchantAccount {
			return failf("a refund from account %d of a payment to account %d", r.MerchantAccount, pr.pr.MerchantAccount)
		}
	}
	s.refunds().requests[r.Hash()] = c.n
	c.summaryf("refund %d of %s of payment %s", r.RefundID, r.Amount, short(r.PaymentHash[:]))
	return nil
}

// refundReceipt: the bank's signed statement that a refund was applied.
func (s *partyState) refundReceipt(c *lineCtx) error {
	r, err := ecash.DecodeRefundReceipt(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if err := c.v.keys.bankSigned(r.SignerPub, r.RefundedAt, r.Body(), r.Sig, "refund receipt"); err != nil {
		return failf("the bank's signature: %v", err)
	}
	rs := s.refunds()
	if prev, ok := rs.receipts[r.RefundHash]; ok {
		if !bytes.Equal(prev, c.rec.data) {
			return failf("the bank signed two different receipts for refund %s", short(r.RefundHash[:]))
		}
		c.summaryf("refund %s again", short(r.RefundHash[:]))
		return nil // fetched again: it restores nothing more
	}
	if s.isWallet() {
		for _, rc := range r.Coins {
			if sp := s.spends[rc.Coin]; sp == nil || sp.hash != r.PaymentHash {
				if err := c.missing("a refund to a coin this transcript does not show paying for it"); err != nil {
					return err
				}
			}
		}
	} else if _, ok := rs.requests[r.RefundHash]; !ok {
		if err := c.missing("the refund request a receipt answers is not in this transcript"); err != nil {
			return err
		}
	}
	rs.receipts[r.RefundHash] = bytes.Clone(c.rec.data)
	for _, rc := range r.Coins {
		rs.restored[rc.Coin] += rc.Value.Value
	}
	c.summaryf("%s of payment %s restored to %d %s", r.Total, short(r.PaymentHash[:]), len(r.Coins), plural(len(r.Coins), "coin", "coins"))
	return nil
}

// creditInput checks a swap input whose swap permission perm did not
// verify (in the request of body hash h) as a spend of its coin's refund
// credit: the credit the receipts restored and other swaps left, signed
// for exactly. It returns that credit, or 0 if the input is no credit
// spend either.
func (s *partyState) creditInput(perm ecash.DepositPermission, h ecash.Hash, cur string) uint64 {
	if s.refund == nil {
		return 0
	}
	id := perm.Coin.ID()
	left := s.refund.restored[id]
	for body, v := range s.refund.used[id] {
		if body != h {
			left -= v
		}
	}
	if left == 0 {
		return 0
	}
	if cp := perm.ForCredit(ecash.Amount{Currency: cur, Value: left}); cp.Verify() != nil {
		return 0
	}
	if s.refund.used[id] == nil {
		s.refund.used[id] = map[ecash.Hash]uint64{}
	}
	s.refund.used[id][h] = left
	return left
}
