package bank_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// raceStore is the env's store with one interleaving forced: the first
// armed RefundRecord / SwapRecord / Withdrawal lookup reads "not found", and then,
// before it returns, the original request (its answer lost to the client)
// commits. This is exactly what happens when a client retries a request
// still in flight: the retry's record lookup runs before the original's
// commit, the rest of the retry after it.
type raceStore struct {
	*pebblestore.Store
	beforeRefundRecord func()
	beforeSwapRecord   func()
	beforeWithdrawal   func()
}

func (s *raceStore) RefundRecord(ctx context.Context, h ecash.Hash) ([]byte, bool, error) {
	r, found, err := s.Store.RefundRecord(ctx, h)
	if f := s.beforeRefundRecord; f != nil {
		s.beforeRefundRecord = nil
		f() // the original commits now
	}
	return r, found, err
}

func (s *raceStore) Withdrawal(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	r, found, err := s.Store.Withdrawal(ctx, h)
	if f := s.beforeWithdrawal; f != nil {
		s.beforeWithdrawal = nil
		f()
	}
	return r, found, err
}

func (s *raceStore) SwapRecord(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	r, found, err := s.Store.SwapRecord(ctx, h)
	if f := s.beforeSwapRecord; f != nil {
		s.beforeSwapRecord = nil
		f()
	}
	return r, found, err
}

// shop opens a merchant account and returns it with its key.
func (e *recoupEnv) shop() (uint64, ed25519.PrivateKey) {
	e.t.Helper()
	mpub, mkey, _ := ed25519.GenerateKey(rand.Reader)
	shop, err := e.b.OpenAccount(e.t.Context(), "shop", mpub, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return shop, mkey
}

// sealedPayment is a payment to shop of one coin of d (withdrawn at
// index), under a request created and expiring as given: the request, its
// body signed by the merchant, and the payment sealed to the bank.
func (e *recoupEnv) sealedPayment(shop uint64, mkey ed25519.PrivateKey, index uint64, d bank.DenomKey, created, expires time.Time) (pr *ecash.PaymentRequest, body, sig, sealed []byte, coin ecash.Coin, coinKey ed25519.PrivateKey) {
	e.t.Helper()
	ks, _ := e.b.KeySet()
	coin, ps := e.coin(index, d)
	pr = &ecash.PaymentRequest{BankID: ks.BankID(), MerchantAccount: shop, MerchantPub: mkey.Public().(ed25519.PublicKey), OrderID: "ord-1",
		Amount: d.Value, SummaryHash: ecash.HashOf([]byte("thing")), CreatedAt: created, ExpiresAt: expires}
	p, err := ecash.NewPayment(pr, []ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{d.Value}, created)
	if err != nil {
		e.t.Fatal(err)
	}
	if sealed, err = ecash.SealPayment(ks.HPKEPub, pr, p); err != nil {
		e.t.Fatal(err)
	}
	body = pr.Body()
	return pr, body, ecash.SignBody(mkey, body), sealed, coin, ps.CoinKey
}

// paidShop deposits one dear coin into a new merchant account and returns
// the merchant, its key, the payment hash and the coin (with its key).
func paidShop(t *testing.T, e *recoupEnv) (uint64, ed25519.PrivateKey, ecash.Hash, ecash.Coin, ed25519.PrivateKey) {
	t.Helper()
	shop, mkey := e.shop()
	pr, body, sig, sealed, coin, coinKey := e.sealedPayment(shop, mkey, 1, e.dear, e.now, e.now.Add(time.Hour))
	if _, _, err := e.b.Deposit(t.Context(), body, sig, sealed); err != nil {
		t.Fatal(err)
	}
	return shop, mkey, pr.Hash(), coin, coinKey
}

func refundRequest(shop uint64, mkey ed25519.PrivateKey, payment ecash.Hash, amount ecash.Amount, now time.Time) []byte {
	req := &ecash.RefundRequest{PaymentHash: payment, MerchantAccount: shop, RefundID: 1, Amount: amount, CreatedAt: now}
	req.Sign(mkey)
	return req.Encode()
}

// TestRefundRetryInFlight: a merchant's refund of a whole payment is
// sent; its answer is lost (timeout) and the merchant retries the same
// signed request while the original is still in flight. The original
// commits between the retry's RefundRecord lookup and its allocation. The
// retry gets the original's receipt, not ErrRefundExceeds (there is no
// room left to refund), a FailedPrecondition that bank.Definitive calls
// "nothing recorded", after which the merchant library would delete a
// refund the bank applied.
func TestRefundRetryInFlight(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	shop, mkey, payment, _, _ := paidShop(t, e)
	raw := refundRequest(shop, mkey, payment, e.dear.Value, e.now)

	rs := &raceStore{Store: e.s}
	retrying := bank.New(rs, e.keys, func() time.Time { return e.now }, nil)
	var original []byte
	rs.beforeRefundRecord = func() {
		_, rcpt, err := e.b.Refund(ctx, raw)
		if err != nil {
			t.Fatalf("original refund: %v", err)
		}
		original = rcpt
	}
	_, got, err := retrying.Refund(ctx, raw)
	if err != nil {
		st := bank.ToStatus(ctx, err, nil)
		t.Fatalf("retry of a refund the bank applied: %v (gRPC %v, Definitive=%v); want the original receipt",
			err, st, bank.Definitive(st))
	}
	if !bytes.Equal(got, original) {
		t.Fatal("retry answered another receipt")
	}
}

// TestCreditSwapRetryInFlight: a wallet spends a coin's refund
// credit in a swap; the answer is lost and the wallet retries the same
// bytes while the original is in flight. The original commits (the credit
// becomes 0) between the retry's SwapRecord lookup and its input checks.
// The retry gets the original's signatures, not "bad signature" (the
// credit is spent), InvalidArgument, after which the wallet would end the
// swap with no outputs and lose the refunded value.
func TestCreditSwapRetryInFlight(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	shop, mkey, payment, coin, coinKey := paidShop(t, e)
	if _, _, err := e.b.Refund(ctx, refundRequest(shop, mkey, payment, e.dear.Value, e.now)); err != nil {
		t.Fatal(err)
	}
	// Spend the whole credit (2) for two cheap outputs.
	req, err := ecash.NewSwapRequest([]ecash.Coin{coin}, []ed25519.PrivateKey{coinKey}, []ecash.Amount{e.dear.Value}, e.outputs(100, 2), e.now)
	if err != nil {
		t.Fatal(err)
	}
	req.SignCredit(0, coinKey, e.dear.Value)
	body := req.Body()

	rs := &raceStore{Store: e.s}
	retrying := bank.New(rs, e.keys, func() time.Time { return e.now }, nil)
	var original [][]byte
	rs.beforeSwapRecord = func() {
		if original, err = e.b.Swap(ctx, body); err != nil {
			t.Fatalf("original swap: %v", err)
		}
	}
	got, err := retrying.Swap(ctx, body)
	if err != nil {
		st := bank.ToStatus(ctx, err, nil)
		t.Fatalf("retry of a credit swap the bank applied: %v (gRPC %v, Definitive=%v); want the original signatures",
			err, st, bank.Definitive(st))
	}
	for i := range got {
		if !bytes.Equal(got[i], original[i]) {
			t.Fatal("retry answered other signatures")
		}
	}
}

type raceDepositStore struct {
	*pebblestore.Store
	beforeDepositRecord func()
}

func (s *raceDepositStore) DepositRecord(ctx context.Context, h ecash.Hash) ([]byte, []ecash.Hash, bool, error) {
	r, c, found, err := s.Store.DepositRecord(ctx, h)
	if f := s.beforeDepositRecord; f != nil {
		s.beforeDepositRecord = nil
		f()
	}
	return r, c, found, err
}

// TestDepositRetryAcrossExpiry: the same root cause at the deposit's
// time checks. A merchant deposits a payment just before its request
// expires and retries the same deposit while it is in flight; the retry's
// record lookup runs before the original commits, its clock reading just
// after the expiry (plus skew). The retry gets the original's receipt,
// not ErrPaymentExpired, which would tell the merchant its coins moved
// nothing.
func TestDepositRetryAcrossExpiry(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	shop, mkey := e.shop()
	pr, body, sig, sealed, _, _ := e.sealedPayment(shop, mkey, 1, e.dear, e.now, e.now.Add(time.Minute))
	e.now = pr.ExpiresAt.Add(ecash.MaxClockSkew) // the last instant a deposit is accepted

	rs := &raceDepositStore{Store: e.s}
	retrying := bank.New(rs, e.keys, func() time.Time { return e.now }, nil)
	var original []byte
	rs.beforeDepositRecord = func() {
		var err error
		if _, original, err = e.b.Deposit(ctx, body, sig, sealed); err != nil {
			t.Fatalf("original deposit: %v", err)
		}
		e.now = e.now.Add(time.Millisecond) // the retry reads the clock a moment later
	}
	_, got, err := retrying.Deposit(ctx, body, sig, sealed)
	if err != nil {
		st := bank.ToStatus(ctx, err, nil)
		t.Fatalf("retry of a deposit the bank applied: %v (gRPC %v, Definitive=%v); want the original receipt", err, st, bank.Definitive(st))
	}
	if !bytes.Equal(got, original) {
		t.Fatal("retry answered another receipt")
	}
}

// holding holds the first commit of one kind ("deposit", "refund", "swap")
// until release is closed, telling arrived when it is held.
type holding struct {
	*pebblestore.Store
	kind             string
	once             sync.Once
	arrived, release chan struct{}
}

func (s *holding) hold(kind string) {
	if kind == s.kind {
		s.once.Do(func() {
			close(s.arrived)
			<-s.release
		})
	}
}

func (s *holding) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	s.hold("deposit")
	return s.Store.Deposit(ctx, op)
}

func (s *holding) Refund(ctx context.Context, op bank.RefundOp) ([]byte, error) {
	s.hold("refund")
	return s.Store.Refund(ctx, op)
}

func (s *holding) Swap(ctx context.Context, op bank.SwapOp) ([][]byte, error) {
	s.hold("swap")
	return s.Store.Swap(ctx, op)
}

// stalled runs op at a bank (on the env's clock) whose store holds op's
// commit (of kind) until the env's clock was set to until: a replica's
// process paused between the bank's checks and the commit. It returns
// op's answer.
func (e *recoupEnv) stalled(kind string, until time.Time, op func(*bank.Bank) error) error {
	hs := &holding{Store: e.s, kind: kind, arrived: make(chan struct{}), release: make(chan struct{})}
	paused := bank.New(hs, e.keys, func() time.Time { return e.now }, nil)
	// As every replica does: the revocations another one logged.
	if err := paused.SyncRevocations(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	answer := make(chan error, 1)
	go func() { answer <- op(paused) }()
	select {
	case <-hs.arrived:
	case err := <-answer:
		e.t.Fatalf("answered before its commit: %v", err)
	}
	e.now = until
	close(hs.release)
	return <-answer
}

// TestDepositHeldPastExpiry: a deposit passed the bank's checks just
// before its payment request expired, then stalled before its commit (a
// replica's process paused) until past the expiry plus twice the skew,
// when the merchant and the wallet stop asking about it and take it as
// not made. It used to commit all the same: the coins spent, the merchant
// credited for an order it had given up. The store refuses a deposit its
// clock finds past the expiry plus the skew (DepositOp.NotAfter,
// ErrTooLate), and nothing moves.
func TestDepositHeldPastExpiry(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	shop, mkey := e.shop()
	pr, body, sig, sealed, coin, _ := e.sealedPayment(shop, mkey, 1, e.dear, e.now, e.now.Add(time.Minute))
	e.now = pr.ExpiresAt
	err := e.stalled("deposit", pr.ExpiresAt.Add(2*ecash.MaxClockSkew+time.Second), func(b *bank.Bank) error {
		_, _, err := b.Deposit(ctx, body, sig, sealed)
		return err
	})
	if !errors.Is(err, bank.ErrTooLate) || !bank.Definitive(bank.ToStatus(ctx, err, nil)) {
		t.Fatalf("the deposit committed past its request's expiry + 2×skew: %v; want ErrTooLate, a refusal", err)
	}
	if a, err := e.s.Account(ctx, shop); err != nil || a.Balance != 0 {
		t.Errorf("merchant balance %d, %v; want 0", a.Balance, err)
	}
	if spent, err := e.s.Spent(ctx, []ecash.Hash{coin.ID()}); err != nil || spent[0] {
		t.Errorf("the coin spent %v, %v; want it unspent", spent, err)
	}
	if _, _, found, err := e.s.DepositRecord(ctx, pr.Hash()); found || err != nil {
		t.Errorf("DepositRecord = found %v, %v; want none", found, err)
	}
}

// TestSwapHeldPastCommitDelay: a swap carries no date (its wallet's
// clock would tell its anonymous requests apart), and a replica paused
// between its checks and the commit committed it however late, after its
// wallet, which keeps a swap the bank refused pending for a day, had given
// it up and spent its coins again. The store commits a swap only within
// bank.MaxCommitDelay of when the replica took it (SwapOp.NotAfter); past
// that it is refused (ErrTooLate) and its coin stays unspent.
func TestSwapHeldPastCommitDelay(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	coin, ps := e.coin(1, e.dear)
	req, err := ecash.NewSwapRequest([]ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{e.dear.Value}, e.outputs(100, 2), time.UnixMilli(0))
	if err != nil {
		t.Fatal(err)
	}
	err = e.stalled("swap", e.now.Add(bank.MaxCommitDelay+time.Second), func(b *bank.Bank) error {
		_, err := b.Swap(ctx, req.Body())
		return err
	})
	if !errors.Is(err, bank.ErrTooLate) || !bank.Definitive(bank.ToStatus(ctx, err, nil)) {
		t.Fatalf("a swap committed past the commit delay: %v; want ErrTooLate, a refusal", err)
	}
	if spent, err := e.s.Spent(ctx, []ecash.Hash{coin.ID()}); err != nil || spent[0] {
		t.Errorf("the coin spent %v, %v; want it unspent", spent, err)
	}
	if _, found, err := e.s.SwapRecord(ctx, ecash.HashOf(req.Body())); found || err != nil {
		t.Errorf("SwapRecord = found %v, %v; want none", found, err)
	}
}

// TestRefundRetriesConcurrent: the same signed full refund sent four
// times at once (a client retrying a request in flight), with real
// goroutines, no hooks: every answer is the receipt.
func TestRefundRetriesConcurrent(t *testing.T) {
	fails := 0
	for round := 0; round < 30; round++ {
		e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
		shop, mkey, payment, _, _ := paidShop(t, e)
		raw := refundRequest(shop, mkey, payment, e.dear.Value, e.now)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { _, _, errs[i] = e.b.Refund(t.Context(), raw) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				fails++
				t.Logf("round %d: %v (Definitive=%v)", round, err, bank.Definitive(bank.ToStatus(t.Context(), err, nil)))
			}
		}
	}
	if fails > 0 {
		t.Fatalf("%d concurrent retries of an applied refund refused", fails)
	}
}
