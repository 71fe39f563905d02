package node

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// party is a customer or a merchant holding an account key.
type party struct {
	key  ed25519.PrivateKey
	acct uint64
}

func (e *env) newParty(t *testing.T, name string, merchant bool, funds string) *party {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	p := &party{key: k, acct: e.openAccount(name, k.Public().(ed25519.PublicKey), merchant)}
	if funds != "" {
		e.credit(p.acct, funds)
	}
	return p
}

func (p *party) pub() ed25519.PublicKey { return p.key.Public().(ed25519.PublicKey) }

// sale is one run of NetBill steps 1-6 played by hand, so a test can stop,
// drop or tamper at any message.
type sale struct {
	goods    []byte
	delivery *echeck.Delivery
	key      [32]byte
	epo      *echeck.SignedEPO
	reply    *ecdh.PrivateKey
	endorsed []byte
}

var serial atomic.Uint64

// newSale runs steps 1-5: quote, encrypted goods, the customer's signed EPO.
func (e *env) newSale(t *testing.T, c, m *party, price string) *sale {
	t.Helper()
	now := e.clock.Now()
	req := &echeck.PriceRequest{Customer: c.pub(), ProductID: "book-1", PRD: []byte("paperback"), Bid: ecash.Amount{Currency: "EUR"}}
	rand.Read(req.TID[:])
	q := echeck.NewQuote(req, m.acct, mustAmount(t, price), now.Add(time.Hour), m.key)
	s := &sale{goods: []byte("the goods: " + price)}
	var err error
	s.delivery, s.key, err = echeck.NewDelivery(rand.Reader, echeck.NewEPOID(m.acct, now, serial.Add(1)), req.TID, s.goods)
	if err != nil {
		t.Fatal(err)
	}
	if s.reply, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	priv := echeck.EPOPrivate{Account: c.acct, Memo: "for the library"}
	copy(priv.ReplyKey[:], s.reply.PublicKey().Bytes())
	rand.Read(priv.Nonce[:])
	s.epo, err = echeck.NewSignedEPO(echeck.NewGoodsEPO(c.pub(), q, s.delivery, now.Add(time.Hour)), priv, e.ks.HPKEPub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// endorse is step 6's first half: the merchant endorses with K.
func (e *env) endorse(t *testing.T, s *sale, m *party, key [32]byte) []byte {
	t.Helper()
	end, err := echeck.NewEndorsement(s.epo, m.acct, "shipped", &key, e.ks.HPKEPub, m.key)
	if err != nil {
		t.Fatal(err)
	}
	s.endorsed = end.Encode()
	return s.endorsed
}

// forge builds an endorsement by hand, as a dishonest merchant would: the
// library's NewEndorsement refuses to endorse what the customer did not
// sign, so an attacker bypasses it.
func (e *env) forge(t *testing.T, s *sale, m *party, key [32]byte) []byte {
	t.Helper()
	end := &echeck.Endorsement{EPO: s.epo.Encode(), MerchantAccount: m.acct, Memo: "forged"}
	h := end.EPOHash()
	sealed, err := ecash.Seal(e.ks.HPKEPub, echeck.InfoGoodsKey, h[:], key[:])
	if err != nil {
		t.Fatal(err)
	}
	end.SealedKey = sealed
	end.MerchantSig = ecash.SignBody(m.key, end.Body())
	return end.Encode()
}

func submit(bankc pb.BankClient, endorsement []byte) (*pb.CheckResult, error) {
	return bankc.SubmitCheck(context.Background(), &pb.SubmitCheckRequest{Endorsement: endorsement})
}

// status is the customer's (or merchant's) status query.
func (e *env) status(bankc pb.BankClient, s *sale, who *party) (*pb.CheckResult, error) {
	q := echeck.NewStatusQuery(s.epo.EPOID, e.clock.Now(), who.key)
	return bankc.CheckStatus(context.Background(), &pb.CheckStatusRequest{Query: q.Encode()})
}

// atomicity checks NetBill's statements 1-5 for a set of sales after a run:
// money conserved; per EPOID no postings or exactly one debit and one
// credit; the customer charged iff the key is recoverable by status query,
// and then it opens the goods; a released key means the merchant was paid.
func (e *env) atomicity(t *testing.T, bankc pb.BankClient, c, m *party, sales []*sale) {
	t.Helper()
	ctx := context.Background()
	totals, err := e.bank.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range totals {
		sum += v
	}
	if sum != 0 {
		t.Fatalf("statement 1: ledger sums to %d", sum)
	}
	hist := func(id uint64) []bank.Posting {
		h, err := e.bank.store.History(ctx, id, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	custH, merchH := hist(c.acct), hist(m.acct)
	for _, s := range sales {
		id := s.epo.EPOID.String()
		debits, credits := 0, 0
		for _, p := range custH {
			if p.Ref == id {
				debits++
			}
		}
		for _, p := range merchH {
			if p.Ref == id {
				credits++
			}
		}
		if debits != credits || debits > 1 {
			t.Fatalf("statement 2: EPOID %s has %d debits and %d credits", id, debits, credits)
		}
		res, err := e.status(bankc, s, c)
		charged := debits == 1
		if !charged {
			if err == nil {
				r, _ := echeck.DecodeReceipt(res.Receipt)
				if r.Decision == echeck.Approved || r.Key != ([32]byte{}) {
					t.Fatalf("statement 4: key released for uncharged EPOID %s", id)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("statement 4: customer charged for %s but the status query fails: %v", id, err)
		}
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		goods, err := r.OpenGoods(e.ks.SigningPub, s.epo, s.delivery.Ciphertext)
		if err != nil || !bytes.Equal(goods, s.goods) {
			t.Fatalf("statement 4: the recovered key does not open the goods of %s: %v", id, err)
		}
		if v := echeck.Judge(r, s.epo, s.delivery.Ciphertext, e.ks.SigningPub); v.Outcome != echeck.NoFault {
			t.Fatalf("statement 7: judge says %v", v)
		}
	}
}

// TestNetBillFailureMatrix drops or crashes at every message from step 4 to
// step 8 and recovers by status query; the atomicity statements hold after
// each run.
func TestNetBillFailureMatrix(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:50.00")
	m := e.newParty(t, "bookshop", true, "")
	var sales []*sale

	t.Run("goods delivered, customer never signs", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:1.00")
		s.epo.EPOID = s.delivery.EPOID // nothing is sent to the bank
		sales = append(sales, s)
		if _, err := e.status(bankc, s, c); status.Code(err) != codes.NotFound {
			t.Fatalf("status before anything was signed: %v", err)
		}
	})
	t.Run("customer signed, merchant crashes before endorsing", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:1.00")
		sales = append(sales, s)
		if _, err := e.status(bankc, s, c); status.Code(err) != codes.NotFound {
			t.Fatalf("status: %v", err)
		}
	})
	t.Run("merchant endorsed, crashes before sending", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:1.00")
		e.endorse(t, s, m, s.key)
		sales = append(sales, s)
		if _, err := e.status(bankc, s, m); status.Code(err) != codes.NotFound {
			t.Fatalf("merchant's status: %v", err)
		}
	})
	t.Run("bank commits, its answer is lost", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:2.00")
		first, err := submit(bankc, e.endorse(t, s, m, s.key))
		if err != nil {
			t.Fatal(err)
		}
		sales = append(sales, s)
		// The merchant retries: the same receipt, byte for byte, no money.
		before := e.raw(c.acct)
		again, err := submit(bankc, s.endorsed)
		if err != nil || !bytes.Equal(again.Receipt, first.Receipt) || e.raw(c.acct) != before {
			t.Fatalf("re-submission: %v", err)
		}
	})
	t.Run("merchant refuses to forward the key", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:3.00")
		if _, err := submit(bankc, e.endorse(t, s, m, s.key)); err != nil {
			t.Fatal(err)
		}
		sales = append(sales, s)
		res, err := e.status(bankc, s, c)
		if err != nil {
			t.Fatal(err)
		}
		blk, err := echeck.OpenCustomerBlock(s.reply, mustReceiptHash(t, res.Receipt), res.CustomerBlock)
		if err != nil || blk.Account != c.acct || blk.NewBalance.String() != "EUR:45.00" {
			t.Fatalf("customer block: %+v %v", blk, err)
		}
	})
	t.Run("bank restarts after committing", func(t *testing.T) {
		s := e.newSale(t, c, m, "EUR:4.00")
		if _, err := submit(bankc, e.endorse(t, s, m, s.key)); err != nil {
			t.Fatal(err)
		}
		sales = append(sales, s)
		e.restartBank(t)
		bankc = e.dialBank()
	})
	e.atomicity(t, bankc, c, m, sales)
	if got := e.raw(c.acct); got != 5000-200-300-400 {
		t.Fatalf("customer balance %d", got)
	}
	// Statement 9: what the merchant holds (its key, the endorsement)
	// cannot open the private part; only the bank's HPKE key can.
	if _, err := sales[3].epo.OpenPrivate(mustX25519(t)); err == nil {
		t.Fatal("the private part opened without the bank's key")
	}
}

// declined checks that the bank answered with a signed decline for reason
// (NetBill: every decline after the signatures verify is a receipt).
func declined(res *pb.CheckResult, err error) func(reason string) error {
	return func(reason string) error {
		if err != nil {
			return err
		}
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil {
			return err
		}
		if err := r.Verify(r.SignerPub); err != nil {
			return err
		}
		if r.Decision != echeck.Declined || r.Reason != reason {
			return fmt.Errorf("receipt %s %q, want a decline %q", r.Decision, r.Reason, reason)
		}
		return nil
	}
}

// TestNetBillTampering: each attack is refused with a signed decline or a
// clear error, and no balance moves.
func TestNetBillTampering(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:20.00")
	m := e.newParty(t, "bookshop", true, "")
	snapshot := func() [2]int64 { return [2]int64{e.raw(c.acct), e.raw(m.acct)} }

	alter := func(f func(*echeck.EPO)) func() error {
		return func() error {
			s := e.newSale(t, c, m, "EUR:1.00")
			f(&s.epo.EPO) // after the customer signed
			_, err := submit(bankc, e.forge(t, s, m, s.key))
			return err
		}
	}
	cases := []struct {
		name string
		want codes.Code
		run  func() error
	}{
		{"merchant raises the price", codes.InvalidArgument, alter(func(p *echeck.EPO) { p.Price.Value = 999 })},
		{"merchant swaps the goods hash", codes.InvalidArgument, alter(func(p *echeck.EPO) { p.GoodsHash[0] ^= 1 })},
		{"merchant swaps the key commitment", codes.InvalidArgument, alter(func(p *echeck.EPO) { p.KeyCommit[0] ^= 1 })},
		{"merchant changes the EPOID", codes.InvalidArgument, alter(func(p *echeck.EPO) { p.EPOID.Serial++ })},
		{"merchant endorses a wrong key", codes.OK, func() error {
			s := e.newSale(t, c, m, "EUR:1.00")
			wrong := s.key
			wrong[0] ^= 1
			return declined(submit(bankc, e.forge(t, s, m, wrong)))(echeck.ReasonBadKey)
		}},
		{"another merchant endorses", codes.InvalidArgument, func() error {
			s := e.newSale(t, c, m, "EUR:1.00")
			other := e.newParty(t, "thief", true, "")
			_, err := submit(bankc, e.forge(t, s, other, s.key))
			return err
		}},
		{"expired EPO", codes.OK, func() error {
			s := e.newSale(t, c, m, "EUR:1.00")
			e.endorse(t, s, m, s.key)
			e.clock.Advance(2 * time.Hour)
			defer e.clock.Advance(-2 * time.Hour)
			return declined(submit(bankc, s.endorsed))(echeck.ReasonExpired)
		}},
		{"a different EPO under a used EPOID", codes.AlreadyExists, func() error {
			s := e.newSale(t, c, m, "EUR:1.00")
			if _, err := submit(bankc, e.endorse(t, s, m, s.key)); err != nil {
				t.Fatal(err)
			}
			s2 := e.newSale(t, c, m, "EUR:1.50")
			s2.epo.EPO.EPOID = s.epo.EPOID
			// re-sign honestly: the customer signed a second order under the same id
			priv, _ := s.epo.OpenPrivate(e.bankHPKE())
			s2.epo, _ = echeck.NewSignedEPO(s2.epo.EPO, *priv, e.ks.HPKEPub, c.key)
			before := snapshot()
			_, err := submit(bankc, e.endorse(t, s2, m, s2.key))
			if snapshot() != before {
				t.Fatal("money moved")
			}
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot()
			err := tc.run()
			if got := status.Code(err); got != tc.want {
				t.Fatalf("%v (%v), want %v", got, err, tc.want)
			}
			if snapshot() != before && tc.name != "a different EPO under a used EPOID" {
				t.Fatalf("balances moved: %v -> %v", before, snapshot())
			}
		})
	}

	t.Run("over the limit: a signed decline", func(t *testing.T) {
		if _, err := e.admin.SetLimits(context.Background(), &pb.SetLimitsRequest{Account: c.acct, PerTransaction: "EUR:5.00"}); err != nil {
			t.Fatal(err)
		}
		defer e.admin.SetLimits(context.Background(), &pb.SetLimitsRequest{Account: c.acct})
		s := e.newSale(t, c, m, "EUR:6.00")
		before := snapshot()
		res, err := submit(bankc, e.endorse(t, s, m, s.key))
		if err != nil {
			t.Fatal(err)
		}
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil || r.Verify(e.ks.SigningPub) != nil || r.Decision != echeck.Declined || r.Reason != echeck.ReasonLimitExceeded || r.Key != ([32]byte{}) {
			t.Fatalf("decline: %+v %v", r, err)
		}
		if snapshot() != before {
			t.Fatal("a declined check moved money")
		}
		// Withdrawals obey the same limit: a EUR:10.24 coin is over it.
		big := e.ks.Denominations[len(e.ks.Denominations)-1]
		ps, _ := ecash.DerivePlanchet(make([]byte, 32), 0)
		p, _, err := ps.Blind(big, nil)
		if err != nil {
			t.Fatal(err)
		}
		wr := &ecash.WithdrawRequest{Account: c.acct, CreatedAt: e.clock.Now(), Planchets: []ecash.Planchet{p}}
		body := wr.Body()
		_, err = bankc.Withdraw(context.Background(), &pb.WithdrawRequest{Body: body, AccountSig: ecash.SignWithdraw(c.key, wr, big.Value)})
		if status.Code(err) != codes.FailedPrecondition || snapshot() != before {
			t.Fatalf("withdrawal over the limit: %v", err)
		}
	})

	t.Run("a stranger's orders in the account's name", func(t *testing.T) {
		// A stranger has the merchant relay orders naming carol's account,
		// signed with a key of their own (the account is sealed to the
		// bank: the merchant cannot tell). Each is refused, and none counts
		// against carol: her own next order is approved.
		for i := 0; i < 2*bank.MaxAuthFailures; i++ {
			s := e.newSale(t, c, m, "EUR:1.00")
			_, mallory, _ := ed25519.GenerateKey(rand.Reader)
			priv, _ := s.epo.OpenPrivate(e.bankHPKE())
			forged := s.epo.EPO
			forged.Customer = mallory.Public().(ed25519.PublicKey)
			s.epo, _ = echeck.NewSignedEPO(forged, *priv, e.ks.HPKEPub, mallory)
			if _, err := submit(bankc, e.forge(t, s, m, s.key)); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("forgery %d: %v", i+1, err)
			}
		}
		s := e.newSale(t, c, m, "EUR:1.00")
		res, err := submit(bankc, e.endorse(t, s, m, s.key))
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := echeck.DecodeReceipt(res.Receipt); r.Decision != echeck.Approved {
			t.Fatalf("carol's own order after a stranger's forgeries: %+v", r)
		}
		acct, err := e.admin.GetAccount(context.Background(), &pb.GetAccountRequest{Account: c.acct})
		if err != nil || acct.Locked {
			t.Fatalf("account shown locked after a stranger's orders (%v)", err)
		}
	})

	t.Run("a stranger's status queries", func(t *testing.T) {
		// A till's EPOIDs are partly guessable (its account, a serial
		// counting up, the time of the delivery): a stranger's query must
		// not tell one the bank decided from one it never saw.
		decided := e.newSale(t, c, m, "EUR:1.00")
		if _, err := submit(bankc, e.endorse(t, decided, m, decided.key)); err != nil {
			t.Fatal(err)
		}
		unknown := e.newSale(t, c, m, "EUR:1.00")
		stranger := &party{key: func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()}
		_, errDecided := e.status(bankc, decided, stranger)
		_, errUnknown := e.status(bankc, unknown, stranger)
		if status.Code(errDecided) != codes.NotFound || status.Code(errUnknown) != codes.NotFound {
			t.Fatalf("stranger's queries: decided %v, unknown %v; want NotFound for both", errDecided, errUnknown)
		}
		// The same words, the EPOID aside.
		strip := func(err error, s *sale) string {
			return strings.ReplaceAll(status.Convert(err).Message(), s.epo.EPOID.String(), "")
		}
		if a, b := strip(errDecided, decided), strip(errUnknown, unknown); a != b {
			t.Fatalf("stranger's queries answered differently: %q and %q", a, b)
		}
		// The parties still get the receipt.
		for _, who := range []*party{c, m} {
			if res, err := e.status(bankc, decided, who); err != nil || len(res.Receipt) == 0 {
				t.Fatalf("a party's status query: %v", err)
			}
		}
	})
}

// TestNetBillConcurrentSubmissions: one endorsed EPO submitted 100 times in
// parallel debits exactly once, and every answer is the same receipt.
func TestNetBillConcurrentSubmissions(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:10.00")
	m := e.newParty(t, "bookshop", true, "")
	s := e.newSale(t, c, m, "EUR:2.50")
	end := e.endorse(t, s, m, s.key)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		receipts = map[string]int{}
	)
	for range 100 {
		wg.Go(func() {
			res, err := submit(bankc, end)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			receipts[string(res.Receipt)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(receipts) != 1 {
		t.Fatalf("%d different receipts", len(receipts))
	}
	if e.raw(c.acct) != 750 || e.raw(m.acct) != 250 {
		t.Fatalf("balances %d and %d, want 750 and 250", e.raw(c.acct), e.raw(m.acct))
	}
	e.atomicity(t, bankc, c, m, []*sale{s})
}

func mustReceiptHash(t *testing.T, raw []byte) ecash.Hash {
	t.Helper()
	r, err := echeck.DecodeReceipt(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r.Hash()
}

func mustX25519(t *testing.T) *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestNetBillStatement: a signed statement lists each EPOID with product,
// amount, counterparty, memo and running balance, and adds up.
func TestNetBillStatement(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:20.00")
	m := e.newParty(t, "bookshop", true, "")
	var sales []*sale
	for _, price := range []string{"EUR:1.00", "EUR:2.50"} {
		s := e.newSale(t, c, m, price)
		if _, err := submit(bankc, e.endorse(t, s, m, s.key)); err != nil {
			t.Fatal(err)
		}
		sales = append(sales, s)
	}
	now := e.clock.Now()
	req := echeck.NewStatementRequest(c.acct, now.Add(-time.Hour), now.Add(time.Hour), now, c.key)
	resp, err := bankc.GetStatement(context.Background(), &pb.GetStatementRequest{Request: req.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := echeck.DecodeStatement(resp.Statement)
	if err != nil || st.Verify(e.ks.SigningPub) != nil {
		t.Fatalf("statement does not verify: %v", err)
	}
	if len(st.Lines) != 3 || st.Opening != 0 || st.Closing() != e.raw(c.acct) {
		t.Fatalf("statement: %d lines, opening %d, closing %d, balance %d", len(st.Lines), st.Opening, st.Closing(), e.raw(c.acct))
	}
	for i, s := range sales {
		l := st.Lines[i+1]
		if !l.EPOID.Equal(s.epo.EPOID) || l.ProductID != "book-1" || l.Counterparty != m.acct || l.Memo != "for the library" || l.Amount != -int64(s.epo.Price.Value) {
			t.Fatalf("line %d: %+v", i+1, l)
		}
	}
	// Someone else's key gets nothing.
	bad := echeck.NewStatementRequest(c.acct, now.Add(-time.Hour), now.Add(time.Hour), now, m.key)
	if _, err := bankc.GetStatement(context.Background(), &pb.GetStatementRequest{Request: bad.Encode()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("statement for another's key: %v", err)
	}
}

// TestPlainCheck: a signed check without goods (the same EPO, kind check) is
// endorsed without a key and deposited; the receipt carries no key, and the
// money moves once.
func TestPlainCheck(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:20.00")
	m := e.newParty(t, "landlord", true, "")
	now := e.clock.Now()
	id, err := echeck.NewCheckEPOID(rand.Reader, m.acct, now)
	if err != nil {
		t.Fatal(err)
	}
	check := echeck.EPO{
		Kind: echeck.KindCheck, Customer: c.pub(), ProductID: "rent november", Price: mustAmount(t, "EUR:12.00"),
		MerchantAccount: m.acct, MerchantPub: m.pub(), EPOID: id, ExpiresAt: now.Add(24 * time.Hour),
	}
	reply := mustX25519(t)
	priv := echeck.EPOPrivate{Account: c.acct, Memo: "flat 3"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	signed, err := echeck.NewSignedEPO(check, priv, e.ks.HPKEPub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	end, err := echeck.NewEndorsement(signed, m.acct, "received", nil, e.ks.HPKEPub, m.key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := submit(bankc, end.Encode())
	if err != nil {
		t.Fatal(err)
	}
	r, err := echeck.DecodeReceipt(res.Receipt)
	if err != nil || r.Verify(e.ks.SigningPub) != nil || r.Decision != echeck.Approved || r.Key != ([32]byte{}) {
		t.Fatalf("check receipt: %+v %v", r, err)
	}
	if again, err := submit(bankc, end.Encode()); err != nil || !bytes.Equal(again.Receipt, res.Receipt) {
		t.Fatalf("re-deposit of the check: %v", err)
	}
	if e.raw(c.acct) != 800 || e.raw(m.acct) != 1200 {
		t.Fatalf("balances %d and %d", e.raw(c.acct), e.raw(m.acct))
	}
}
