package merchant

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// statement is the bank's signed statement of an account, signed for by
// key, as the wallet or merchant decodes it.
func (s *shop) statement(acct uint64, from, to time.Time) (*echeck.Statement, error) {
	s.t.Helper()
	key := s.custKey
	if acct == s.account {
		key = s.m.key
	}
	req := echeck.NewStatementRequest(acct, from, to, s.clock.now(), key)
	st, _, err := s.bank.Statement(context.Background(), req.Encode())
	if err != nil {
		return nil, err
	}
	return echeck.DecodeStatement(st.Encode())
}

// The customer's account and memo travel only in the part sealed to the
// bank (PROTOCOL §9.9): the merchant's own statement shows neither, only
// its endorsement's memo; the customer's shows its memo and the merchant.
func TestMerchantStatementHidesTheCustomer(t *testing.T) {
	s := newShop(t)
	now := s.clock.now()
	_, q, d := s.offer("song")
	if _, err := s.m.SubmitEPO(context.Background(), s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, now.Add(time.Hour)))); err != nil {
		t.Fatal(err)
	}
	merch, err := s.statement(s.account, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(merch.Lines) != 1 {
		t.Fatalf("merchant's statement: %d lines, want the sale", len(merch.Lines))
	}
	if l := merch.Lines[0]; l.Counterparty != 0 || l.Memo != "sale of song" {
		t.Errorf("merchant's line: counterparty %d, memo %q; want no counterparty and the endorsement's memo", l.Counterparty, l.Memo)
	}
	cust, err := s.statement(s.custAcct, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if l := cust.Lines[len(cust.Lines)-1]; l.Counterparty != s.account || l.Memo != "test" || l.Amount != -150 {
		t.Errorf("customer's line: counterparty %d, memo %q, amount %d; want the merchant %d, the customer's memo, -150", l.Counterparty, l.Memo, l.Amount, s.account)
	}
}

// holdCheck holds back the store's commit of one EPOID until released.
type holdCheck struct {
	bank.Store
	mu               sync.Mutex
	hold             string
	entered, release chan struct{}
}

func (h *holdCheck) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	h.mu.Lock()
	hold := h.hold
	h.mu.Unlock()
	if op.EPOID == hold {
		close(h.entered)
		<-h.release
	}
	return h.Store.Check(ctx, op)
}

// A check that read the bank's clock first but commits second is posted
// at the later time, so the account's postings stay in time order and its
// statements are whole and verify.
func TestStatementFollowsCommitOrder(t *testing.T) {
	var hc *holdCheck
	s := newShopWith(t, func(st bank.Store) bank.Store {
		hc = &holdCheck{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
		return hc
	})
	ctx := context.Background()
	t0 := s.clock.now()
	check := func(at time.Time) (string, []byte) {
		id, err := echeck.NewCheckEPOID(rand.Reader, s.account, at)
		if err != nil {
			t.Fatal(err)
		}
		return id.String(), s.sign(echeck.EPO{Kind: echeck.KindCheck, Customer: s.customerPub(), Price: ecash.MustParseAmount("EUR:1.00"),
			MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: at.Add(time.Hour)})
	}
	idA, rawA := check(t0)
	hc.mu.Lock()
	hc.hold = idA
	hc.mu.Unlock()
	done := make(chan error, 1)
	go func() { _, err := s.m.WriteCheck(ctx, rawA); done <- err }() // the bank reads t0
	select {
	case <-hc.entered:
	case err := <-done:
		t.Fatalf("check A finished before its commit was held: %v", err)
	}
	func() {
		defer close(hc.release)
		s.clock.add(time.Second)
		_, rawB := check(s.clock.now())
		if _, err := s.m.WriteCheck(ctx, rawB); err != nil { // read t0+1s, committed first
			t.Fatal(err)
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, acct := range []uint64{s.custAcct, s.account} {
		if _, err := s.statement(acct, t0.Add(-time.Hour), t0.Add(time.Hour)); err != nil {
			t.Errorf("account %d, the whole period: %v", acct, err)
		}
		st, err := s.statement(acct, t0.Add(500*time.Millisecond), t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// Both checks posted at t0+1s, after the period's start.
		if len(st.Lines) != 2 {
			t.Errorf("account %d from t0+0.5s: %d lines (opening %d), want both checks", acct, len(st.Lines), st.Opening)
		}
	}
}

// The same with the bank's real clock: many checks to one merchant at
// once, then its statement, which must verify whatever order they
// committed in.
func TestStatementUnderConcurrentChecks(t *testing.T) {
	s := newShop(t)
	s.bank = bank.New(s.bank.Store(), bankKeys(t), time.Now, nil)
	s.bankc.srv = s.bank.PublicServer()
	s.clock.ns.Store(time.Now().UnixNano())
	ctx := context.Background()
	start := time.Now()
	ks, _ := s.bank.KeySet()
	const n = 200
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Now()
			id, err := echeck.NewCheckEPOID(rand.Reader, s.account, at)
			if err != nil {
				t.Error(err)
				return
			}
			reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
			priv := echeck.EPOPrivate{Account: s.custAcct}
			copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
			signed, err := echeck.NewSignedEPO(echeck.EPO{Kind: echeck.KindCheck, Customer: s.customerPub(), Price: ecash.MustParseAmount("EUR:0.01"),
				MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: at.Add(time.Hour)}, priv, ks.HPKEPub, s.custKey)
			if err != nil {
				t.Error(err)
				return
			}
			end, err := echeck.NewEndorsement(signed, s.account, "", nil, ks.HPKEPub, s.m.key)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.bankc.srv.SubmitCheck(ctx, &pb.SubmitCheckRequest{Endorsement: end.Encode()}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h, err := s.bank.Store().History(ctx, s.account, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	inversions := 0
	for i := 1; i < len(h); i++ { // newest first
		if h[i].Time.After(h[i-1].Time) {
			if inversions++; inversions == 1 {
				t.Errorf("posting %d at %s, after posting %d at %s", h[i].Seq, h[i].Time, h[i-1].Seq, h[i-1].Time)
			}
		}
	}
	if inversions > 1 {
		t.Errorf("%d postings in all stamped before the one committed ahead of them", inversions)
	}
	s.clock.ns.Store(time.Now().UnixNano())
	st, err := s.statement(s.account, start.Add(-time.Minute), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("the merchant's signed statement: %v", err)
	}
	if len(st.Lines) != n {
		t.Errorf("%d lines, want %d", len(st.Lines), n)
	}
}
