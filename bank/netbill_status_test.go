package bank_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// readCountingStore counts the store reads a status query makes.
type readCountingStore struct {
	bank.Store
	reads atomic.Int64
}

func (s *readCountingStore) Account(ctx context.Context, id uint64) (bank.Account, error) {
	s.reads.Add(1)
	return s.Store.Account(ctx, id)
}

func (s *readCountingStore) CheckRecord(ctx context.Context, epoid string) (bank.CheckOutcome, bool, error) {
	s.reads.Add(1)
	return s.Store.CheckRecord(ctx, epoid)
}

// netbillFixture is a bank over a Pebble store in memory with a funded
// customer and a merchant, for NetBill tests driven through bank.Bank.
type netbillFixture struct {
	t                  *testing.T
	now                time.Time
	b                  *bank.Bank
	keys               *bank.Keys
	store              *readCountingStore
	ks                 *ecash.KeySet
	custKey, merchKey  ed25519.PrivateKey
	customer, merchant uint64
	serial             uint64
	reply              *ecdh.PrivateKey // the reply key of the last endorsedOrder
}

func newNetbillFixture(t *testing.T) *netbillFixture {
	t.Helper()
	f := &netbillFixture{t: t, now: time.Unix(1_800_000_000, 0)}
	keys, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.Amount{Currency: "EUR", Value: 1}, Cipher: ecash.CipherCS},
	}}, f.now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem(), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.store = &readCountingStore{Store: s}
	f.keys = keys
	f.b = bank.New(f.store, keys, func() time.Time { return f.now }, nil)
	ctx := t.Context()
	if err := f.b.PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	f.ks, _ = f.b.KeySet()
	_, f.custKey, _ = ed25519.GenerateKey(rand.Reader)
	_, f.merchKey, _ = ed25519.GenerateKey(rand.Reader)
	if f.customer, err = f.b.OpenAccount(ctx, "customer", f.custKey.Public().(ed25519.PublicKey), false); err != nil {
		t.Fatal(err)
	}
	if f.merchant, err = f.b.OpenAccount(ctx, "merchant", f.merchKey.Public().(ed25519.PublicKey), true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Credit(ctx, f.customer, ecash.Amount{Currency: "EUR", Value: 10_000}, "funds", ""); err != nil {
		t.Fatal(err)
	}
	return f
}

// endorsedOrder plays NetBill steps 1-6 for a goods sale of price minor
// units with the customer's memo and returns the endorsement and the EPOID.
func (f *netbillFixture) endorsedOrder(price uint64, memo string) ([]byte, echeck.EPOID) {
	t := f.t
	t.Helper()
	req := &echeck.PriceRequest{Customer: f.custKey.Public().(ed25519.PublicKey), ProductID: "book-1", PRD: []byte("paperback"), Bid: ecash.Amount{Currency: "EUR"}}
	rand.Read(req.TID[:])
	q := echeck.NewQuote(req, f.merchant, ecash.Amount{Currency: "EUR", Value: price}, f.now.Add(time.Hour), f.merchKey)
	f.serial++
	d, key, err := echeck.NewDelivery(rand.Reader, echeck.NewEPOID(f.merchant, f.now, f.serial), req.TID, []byte("the goods"))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.reply = reply
	priv := echeck.EPOPrivate{Account: f.customer, Memo: memo}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	rand.Read(priv.Nonce[:])
	epo, err := echeck.NewSignedEPO(echeck.NewGoodsEPO(req.Customer, q, d, f.now.Add(time.Hour)), priv, f.ks.HPKEPub, f.custKey)
	if err != nil {
		t.Fatal(err)
	}
	end, err := echeck.NewEndorsement(epo, f.merchant, "shipped", &key, f.ks.HPKEPub, f.merchKey)
	if err != nil {
		t.Fatal(err)
	}
	return end.Encode(), epo.EPOID
}

// TestCheckStatusStrangerSameReads: a stranger's status query of an EPOID
// the bank decided and of one it never decided get the same refusal after
// the same store reads, so that neither the answer nor a missing read
// tells which of a till's (partly guessable) EPOIDs were paid for (the
// decode of a decided EPOID's record still takes time an undecided one
// does not). The customer's own query is still answered.
func TestCheckStatusStrangerSameReads(t *testing.T) {
	f := newNetbillFixture(t)
	ctx := t.Context()
	end, decided := f.endorsedOrder(500, "for the library")
	if _, err := f.b.SubmitCheck(ctx, end); err != nil {
		t.Fatal(err)
	}
	_, undecided := f.endorsedOrder(500, "")
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	ask := func(id echeck.EPOID, who ed25519.PrivateKey) (int64, error) {
		f.store.reads.Store(0)
		_, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(id, f.now, who).Encode())
		return f.store.reads.Load(), err
	}
	nDecided, errDecided := ask(decided, stranger)
	nUndecided, errUndecided := ask(undecided, stranger)
	if !errors.Is(errDecided, bank.ErrNoCheck) || !errors.Is(errUndecided, bank.ErrNoCheck) {
		t.Fatalf("a stranger's queries: %v and %v, want both ErrNoCheck", errDecided, errUndecided)
	}
	if strings.ReplaceAll(errDecided.Error(), decided.String(), "ID") != strings.ReplaceAll(errUndecided.Error(), undecided.String(), "ID") {
		t.Errorf("refusals differ: %q and %q", errDecided, errUndecided)
	}
	if nDecided != nUndecided {
		t.Errorf("a stranger's query read the store %d times for a decided EPOID, %d for an undecided one", nDecided, nUndecided)
	}
	if _, err := ask(decided, f.custKey); err != nil {
		t.Fatalf("the customer's own query: %v", err)
	}
}

// TestCheckStatusOrderRecordedBeforeTextRules: an order a build before
// memos followed ecash.CheckText accepted and recorded, with control
// characters in the customer's and the merchant's memos, is still answered
// for by a status query (the bank decodes its own record by the rule it was
// accepted under), while the same bytes sent again by a peer are refused.
func TestCheckStatusOrderRecordedBeforeTextRules(t *testing.T) {
	f := newNetbillFixture(t)
	ctx := t.Context()
	req := &echeck.PriceRequest{Customer: f.custKey.Public().(ed25519.PublicKey), ProductID: "book-1", PRD: []byte("paperback"), Bid: ecash.Amount{Currency: "EUR"}}
	rand.Read(req.TID[:])
	price := ecash.Amount{Currency: "EUR", Value: 700}
	q := echeck.NewQuote(req, f.merchant, price, f.now.Add(time.Hour), f.merchKey)
	d, key, err := echeck.NewDelivery(rand.Reader, echeck.NewEPOID(f.merchant, f.now, 1), req.TID, []byte("the goods"))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv := echeck.EPOPrivate{Account: f.customer}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	epo, err := echeck.NewSignedEPO(echeck.NewGoodsEPO(req.Customer, q, d, f.now.Add(time.Hour)), priv, f.ks.HPKEPub, f.custKey)
	if err != nil {
		t.Fatal(err)
	}
	// What the older build's wallet and till could write: memos with a bell
	// and an escape, the customer's sealed to the bank.
	priv.Memo = "rent\x07 \x1b[2J"
	h := epo.EPO.BodyHash()
	if epo.SealedPrivate, err = ecash.Seal(f.ks.HPKEPub, echeck.InfoEPOPrivate, h[:], priv.Encode()); err != nil {
		t.Fatal(err)
	}
	epo.CustomerSig = ecash.SignBody(f.custKey, epo.SignatureInput())
	end := &echeck.Endorsement{EPO: epo.Encode(), MerchantAccount: f.merchant, Memo: "shipped\x07"}
	eh := end.EPOHash()
	if end.SealedKey, err = ecash.Seal(f.ks.HPKEPub, echeck.InfoGoodsKey, eh[:], key[:]); err != nil {
		t.Fatal(err)
	}
	end.MerchantSig = ecash.SignBody(f.merchKey, end.Body())
	raw := end.Encode()
	if _, err := f.b.SubmitCheck(ctx, raw); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("an order with control characters in its memos, from a peer: %v, want refused as malformed", err)
	}

	// Recorded as the older build did, through the store.
	receipt := func(dec echeck.Decision, reason string, k [32]byte) []byte {
		r, err := echeck.NewReceipt(epo, dec, reason, k, f.now, f.keys.Signing)
		if err != nil {
			t.Fatal(err)
		}
		return r.Encode()
	}
	op := bank.CheckOp{EPOID: epo.EPOID.String(), EPOHash: epo.Hash(), Customer: f.customer, Merchant: f.merchant,
		Amount: int64(price.Value), Product: epo.ProductID, Memo: priv.Memo, MerchantMemo: end.Memo, Record: raw, Time: f.now,
		Approved:      receipt(echeck.Approved, "", key),
		DeclinedFunds: receipt(echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}),
		DeclinedLimit: receipt(echeck.Declined, echeck.ReasonLimitExceeded, [32]byte{}),
		Log: auditlog.Check{EPOID: epo.EPOID.String(), EPOHash: epo.Hash(), PartsHash: epo.PartsHash(), CustomerSig: epo.CustomerSig,
			Customer: f.customer, Merchant: f.merchant, Amount: price}}
	if out, err := f.store.Check(ctx, op); err != nil || out.Outcome != bank.CheckApproved {
		t.Fatalf("recording the order: %+v, %v", out, err)
	}

	for who, k := range map[string]ed25519.PrivateKey{"customer": f.custKey, "merchant": f.merchKey} {
		res, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(epo.EPOID, f.now, k).Encode())
		if err != nil {
			t.Fatalf("the %s's status query: %v", who, err)
		}
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		if r.Decision != echeck.Approved || r.Key != key {
			t.Fatalf("the %s got decision %v with key %x, want approved with K", who, r.Decision, r.Key[:4])
		}
		if _, err := echeck.OpenCustomerBlock(reply, r.Hash(), res.CustomerBlock); err != nil {
			t.Fatalf("the %s's customer block: %v", who, err)
		}
	}
	if _, err := f.b.SubmitCheck(ctx, raw); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("the recorded order sent again by a peer: %v, want refused as malformed", err)
	}
}

// TestCheckStatusRateLimited: a status query costs the bank a decryption,
// so it counts against the per-account rate as the requester's other
// signed requests do: the customer's against the customer's account, the
// merchant's against the merchant's, and a stranger's, refused before the
// decryption, against no one's. (The clock does not move: no token comes
// back.)
func TestCheckStatusRateLimited(t *testing.T) {
	f := newNetbillFixture(t)
	ctx := t.Context()
	end, id := f.endorsedOrder(500, "")
	if _, err := f.b.SubmitCheck(ctx, end); err != nil {
		t.Fatal(err)
	}
	f.b.LimitAccounts(bank.NewRateLimiter(1, 2, 100)) // from here, bursts of 2
	ask := func(who ed25519.PrivateKey) error {
		_, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(id, f.now, who).Encode())
		return err
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	for range 5 {
		if err := ask(stranger); !errors.Is(err, bank.ErrNoCheck) {
			t.Fatalf("a stranger's query: %v, want ErrNoCheck", err)
		}
	}
	for who, k := range map[string]ed25519.PrivateKey{"customer": f.custKey, "merchant": f.merchKey} {
		for i := range 2 {
			if err := ask(k); err != nil {
				t.Fatalf("the %s's query %d, within its rate: %v", who, i+1, err)
			}
		}
		if err := ask(k); !errors.Is(err, bank.ErrRateLimited) {
			t.Fatalf("the %s's third query at once: %v, want ErrRateLimited", who, err)
		}
	}
}

// TestSubmitCheckResubmissionCharged: a re-submission of a decided order is
// answered from the record, the receipt and log index as the decision's and
// a customer block the customer opens to the same contents, but the block
// costs the bank a decryption of the sealed private part, so it is charged
// before it, to a rate of the order's merchant and customer together: past
// that rate the merchant gets ErrRateLimited and the bank decrypts nothing. (The clock does not
// move: no token comes back until it does.)
func TestSubmitCheckResubmissionCharged(t *testing.T) {
	f := newNetbillFixture(t)
	ctx := t.Context()
	end, _ := f.endorsedOrder(500, "for the library")
	f.b.LimitAccounts(bank.NewRateLimiter(1, 2, 100))
	opens := bank.CountPrivateOpens(t)
	first, err := f.b.SubmitCheck(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	block := func(res *bank.CheckResult) echeck.CustomerBlock {
		t.Helper()
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		b, err := echeck.OpenCustomerBlock(f.reply, r.Hash(), res.CustomerBlock)
		if err != nil {
			t.Fatalf("the customer block: %v", err)
		}
		return *b
	}
	want := block(first)
	for i := range 2 {
		opens.Store(0)
		again, err := f.b.SubmitCheck(ctx, end)
		if err != nil {
			t.Fatalf("re-submission %d, within the merchant's rate: %v", i+1, err)
		}
		if !bytes.Equal(again.Receipt, first.Receipt) || again.LogIndex != first.LogIndex {
			t.Fatalf("re-submission %d answered with another receipt or log index", i+1)
		}
		if got := block(again); got != want {
			t.Fatalf("re-submission %d's customer block: %+v, want %+v", i+1, got, want)
		}
		if n := opens.Load(); n != 1 {
			t.Fatalf("re-submission %d opened the private part %d times, want 1", i+1, n)
		}
	}
	opens.Store(0)
	if _, err := f.b.SubmitCheck(ctx, end); !errors.Is(err, bank.ErrRateLimited) {
		t.Fatalf("a third re-submission at once: %v, want ErrRateLimited", err)
	}
	if n := opens.Load(); n != 0 {
		t.Fatalf("a re-submission past the rate opened the private part %d times", n)
	}
	// Not charged to the customer whose rate paid for the decision: the
	// customer's own status query still passes.
	if _, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(want.EPOID, f.now, f.custKey).Encode()); err != nil {
		t.Fatalf("the customer's status query after the merchant's re-submissions: %v", err)
	}
	f.now = f.now.Add(time.Second)
	if _, err := f.b.SubmitCheck(ctx, end); err != nil {
		t.Fatalf("a re-submission a second later: %v", err)
	}
	// Another order under the decided EPOID is refused from the record
	// alone, nothing decrypted and nothing charged.
	f.now, f.serial = f.now.Add(-time.Second), f.serial-1
	other, _ := f.endorsedOrder(500, "")
	f.b.LimitAccounts(bank.NewRateLimiter(1, 2, 100)) // full buckets
	opens.Store(0)
	for range 3 {
		if _, err := f.b.SubmitCheck(ctx, other); !errors.Is(err, bank.ErrEPOIDConflict) {
			t.Fatalf("another order under the decided EPOID: %v, want ErrEPOIDConflict", err)
		}
	}
	if n := opens.Load(); n != 0 {
		t.Fatalf("refusing another order under a decided EPOID opened %d private parts", n)
	}
	// Nothing charged: the burst of two re-submissions is still whole.
	for i := range 2 {
		if _, err := f.b.SubmitCheck(ctx, end); err != nil {
			t.Fatalf("re-submission %d after three refused conflicts: %v (the conflicts were charged)", i+1, err)
		}
	}
}

// TestSubmitCheckResubmissionNotTheMerchantsRate: a till forwards a
// customer's re-submitted order to the bank as it is (merchant.SubmitEPO,
// WriteCheck), so the customer decides how often the merchant re-submits
// it. Charged to the merchant's own account, a customer re-sending one
// order it paid for used up the merchant's rate: the merchant's honest
// re-submission of another customer's order (a lost answer) and its own
// status queries were refused. A re-submission is charged to the merchant
// and customer of the order together, which neither can use up for the
// other's own requests.
func TestSubmitCheckResubmissionNotTheMerchantsRate(t *testing.T) {
	f := newNetbillFixture(t)
	ctx := t.Context()
	f.b.LimitAccounts(bank.NewRateLimiter(1, 2, 100))
	mine, _ := f.endorsedOrder(500, "")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other, err := f.b.OpenAccount(ctx, "another customer", otherKey.Public().(ed25519.PublicKey), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Credit(ctx, other, ecash.Amount{Currency: "EUR", Value: 10_000}, "funds", ""); err != nil {
		t.Fatal(err)
	}
	f.custKey, f.customer = otherKey, other
	theirs, theirID := f.endorsedOrder(500, "")
	for _, end := range [][]byte{mine, theirs} {
		if _, err := f.b.SubmitCheck(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	// The first customer has the till send its decided order again and
	// again, until the bank refuses it.
	refused := false
	for range 10 {
		if _, err := f.b.SubmitCheck(ctx, mine); errors.Is(err, bank.ErrRateLimited) {
			refused = true
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !refused {
		t.Fatal("re-submissions of one order never refused")
	}
	if _, err := f.b.SubmitCheck(ctx, theirs); err != nil {
		t.Fatalf("the merchant's re-submission of another customer's order, after the first customer's: %v", err)
	}
	if _, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(theirID, f.now, f.merchKey).Encode()); err != nil {
		t.Fatalf("the merchant's status query, after a customer's re-submissions: %v", err)
	}
}

// heldCheck holds the first Check until release is closed, telling
// arrived when it is held: a replica's process paused between the bank's
// checks of an order and its commit.
type heldCheck struct {
	bank.Store
	once             sync.Once
	arrived, release chan struct{}
}

func (s *heldCheck) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	s.once.Do(func() {
		close(s.arrived)
		<-s.release
	})
	return s.Store.Check(ctx, op)
}

// TestCheckHeldPastExpiry: an order passed the bank's checks before its
// EPO expired, then stalled before its commit until past the expiry plus
// twice the skew, when the customer's wallet takes an order the bank has
// not decided as never paid (wallet.PurchaseExpired). It used to commit
// all the same, debiting the customer for an order its wallet had given
// up. The store refuses a decision its clock finds past the expiry plus
// the skew (CheckOp.NotAfter), and the bank records the order as declined
// for its expiry, with a signed receipt, as for an order that came late.
func TestCheckHeldPastExpiry(t *testing.T) {
	// lags is how far the paused replica's clock is behind the store's
	// when it resumes: none, or more than the skew (clocks out of true).
	for _, lags := range []time.Duration{0, 2*ecash.MaxClockSkew + time.Minute} {
		f := newNetbillFixture(t)
		ctx := t.Context()
		end, id := f.endorsedOrder(500, "")
		e, err := echeck.DecodeEndorsement(end)
		if err != nil {
			t.Fatal(err)
		}
		epo, err := e.Verify(f.merchKey.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		expires := epo.ExpiresAt
		f.now = expires.Add(-time.Second)

		hs := &heldCheck{Store: f.store, arrived: make(chan struct{}), release: make(chan struct{})}
		paused := bank.New(hs, f.keys, func() time.Time { return f.now.Add(-lags) }, nil)
		type answer struct {
			res *bank.CheckResult
			err error
		}
		answered := make(chan answer, 1)
		go func() {
			res, err := paused.SubmitCheck(ctx, end)
			answered <- answer{res, err}
		}()
		select {
		case <-hs.arrived:
		case a := <-answered:
			t.Fatalf("answered before its commit: %v", a.err)
		}
		f.now = expires.Add(2*ecash.MaxClockSkew + time.Second)
		close(hs.release)
		a := <-answered
		if a.err != nil {
			t.Fatalf("an order held past its expiry (the replica %s behind): %v; want a signed decline", lags, a.err)
		}
		r, err := echeck.DecodeReceipt(a.res.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Verify(f.ks.SigningPub); err != nil {
			t.Fatalf("the decline's signature: %v", err)
		}
		// Never dated before the expiry it declines for, however far
		// behind the replica's clock.
		if r.Decision != echeck.Declined || r.Reason != echeck.ReasonExpired || r.DecidedAt.Before(expires) {
			t.Errorf("the replica %s behind: receipt %v %q decided at %s; want declined as expired, not before %s", lags, r.Decision, r.Reason, r.DecidedAt, expires)
		}
		for who, want := range map[uint64]int64{f.customer: 10_000, f.merchant: 0} {
			if acct, err := f.store.Account(ctx, who); err != nil || acct.Balance != want {
				t.Errorf("account %d: balance %d, %v; want %d", who, acct.Balance, err, want)
			}
		}
		// Recorded: the customer's status query gets the same receipt.
		st, err := f.b.CheckStatus(ctx, echeck.NewStatusQuery(id, f.now, f.custKey).Encode())
		if err != nil || !bytes.Equal(st.Receipt, a.res.Receipt) {
			t.Errorf("status of the order = %v; want its recorded decline", err)
		}
	}
}
