package auditcmd

import (
	"bytes"
	"slices"

	"github.com/blindbank/blindbank/ecash"
)

// ---- recoup-request, recoup-receipt (PROTOCOL.md §4b)

// recoupInfo is a recoup request without outputs, waiting for its receipt.
type recoupInfo struct {
	line int
	coin ecash.Hash
	den  ecash.Denomination
}

// revoked reports whether any key set given lists the denomination revoked.
func (k *KeySets) revoked(id ecash.Hash) bool {
	for _, ks := range k.Sets() {
		if d, err := ks.Denomination(id); err == nil && d.Revoked {
			return true
		}
	}
	return false
}

func (s *partyState) recoupRequest(c *lineCtx) error {
	r, err := ecash.DecodeRecoupRequest(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if !s.isWallet() {
		return failf("a recoup request in a %s's transcript: only wallets recoup", s.party)
	}
	d, err := c.v.keys.Denomination(r.Coin.Denom)
	if err != nil {
		return failf("the coin: %v", err)
	}
	if !c.v.keys.revoked(d.ID) {
		return failf("a recoup of a %s coin, whose denomination no key set given lists as revoked", d.Value)
	}
	if err := r.Coin.Verify(d.Key); err != nil {
		return failf("the bank's signature on the coin does not verify: not a coin the bank issued (%v)", err)
	}
	perm := r.Permission(d.Value)
	if err := perm.Verify(); err != nil {
		return failf("the coin's signature on its recoup permission does not verify (%v)", err)
	}
	id, h := r.Coin.ID(), r.Hash()
	if sp := s.spends[id]; sp != nil && sp.hash != h {
		return failf("coin %s was already spent at line %d (%s)", short(id[:]), sp.line, sp.what)
	}
	if len(r.Outputs) == 0 {
		s.recoups[h] = &recoupInfo{line: c.n, coin: id, den: d}
		c.summaryf("recoup of a %s coin %s of a revoked denomination, to be credited; coin and permission signatures verified", d.Value, short(id[:]))
		return nil
	}
	out := ecash.Amount{Currency: d.Value.Currency}
	open := map[ecash.Hash]int{}
	for i, p := range r.Outputs {
		od, err := c.v.keys.Denomination(p.Denom)
		if err != nil {
			return failf("output %d: %v", i+1, err)
		}
		if out, err = out.Add(od.Value); err != nil {
			return failf("outputs: %v", err)
		}
		open[p.Denom]++
	}
	if out != d.Value {
		return failf("the coin is worth %s, the outputs %s: a re-issue keeps the value", d.Value, out)
	}
	is := &issue{line: c.n, kind: "recoup", open: open, inputs: []ecash.Hash{id}, outputs: h}
	s.issues = append(s.issues, is)
	s.issueBody[h] = is
	s.current = is
	c.summaryf("recoup of a %s coin %s of a revoked denomination, re-issued as %d new; coin and permission signatures verified", d.Value, short(id[:]), len(r.Outputs))
	return nil
}

func (s *partyState) recoupReceipt(c *lineCtx) error {
	r, err := ecash.DecodeDepositReceipt(c.rec.data)
	if err != nil {
		return err
	}
	if err := canonical(c.rec.data, r.Encode()); err != nil {
		return err
	}
	if err := c.v.keys.bankSigned(r.SignerPub, r.DepositedAt, r.Body(), r.Sig, "recoup receipt"); err != nil {
		return failf("the bank's signature: %v", err)
	}
	rc := s.recoups[r.PaymentHash]
	if rc == nil {
		return failf("a recoup receipt for request %s, which no line before asked for", short(r.PaymentHash[:]))
	}
	if !slices.Equal(r.Coins, []ecash.Hash{rc.coin}) || r.Total != rc.den.Value {
		return failf("the receipt credits %s for other coins than the recoup of line %d", r.Total, rc.line)
	}
	if prev := s.receipts[r.PaymentHash]; prev != nil && !bytes.Equal(prev.raw, c.rec.data) {
		return failf("the bank signed two different receipts for recoup %s: line %d and this one", short(r.PaymentHash[:]), prev.line)
	}
	s.receipts[r.PaymentHash] = &receiptInfo{line: c.n, raw: c.rec.data}
	s.spends[rc.coin] = &spendInfo{line: c.n, hash: r.PaymentHash, what: "recoup"}
	c.summaryf("bank signature verified: %s credited to account %d for the recoup of line %d", r.Total, r.MerchantAccount, rc.line)
	return nil
}
