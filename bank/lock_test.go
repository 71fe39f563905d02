package bank_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// policyBank is a bank over an in-memory store with one customer account
// holding EUR:100.00, and EUR:1.00 RSA coins to withdraw.
type policyBank struct {
	t    *testing.T
	b    *bank.Bank
	now  time.Time
	ks   *ecash.KeySet
	acct uint64
	key  ed25519.PrivateKey
	seed []byte
	next uint64
}

func newPolicyBank(t *testing.T) *policyBank {
	t.Helper()
	p := &policyBank{t: t, now: time.Unix(1_800_000_000, 0)}
	keys, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.Amount{Currency: "EUR", Value: 100}, Cipher: ecash.CipherRSA},
	}}, p.now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p.b = bank.New(s, keys, func() time.Time { return p.now }, nil)
	if err := p.b.PublishKeySet(t.Context()); err != nil {
		t.Fatal(err)
	}
	p.ks, _ = p.b.KeySet()
	p.seed = make([]byte, 32)
	rand.Read(p.seed)
	if p.key, err = ecash.DeriveAccountKey(p.seed); err != nil {
		t.Fatal(err)
	}
	if p.acct, err = p.b.OpenAccount(t.Context(), "customer", p.key.Public().(ed25519.PublicKey), false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Credit(t.Context(), p.acct, ecash.Amount{Currency: "EUR", Value: 10000}, "test", ""); err != nil {
		t.Fatal(err)
	}
	return p
}

// withdrawRequest is a request for n coins of EUR:1.00, signed with the
// account's key, or with a stranger's if forged.
func (p *policyBank) withdrawRequest(n int, forged bool) (body, sig []byte) {
	p.t.Helper()
	d := p.ks.Denominations[0]
	req := &ecash.WithdrawRequest{Account: p.acct, CreatedAt: p.now}
	for range n {
		ps, err := ecash.DerivePlanchet(p.seed, p.next)
		if err != nil {
			p.t.Fatal(err)
		}
		p.next++
		pl, _, err := ps.Blind(d, nil)
		if err != nil {
			p.t.Fatal(err)
		}
		req.Planchets = append(req.Planchets, pl)
	}
	rand.Read(req.Nonce[:])
	amount, err := p.ks.WithdrawAmount(req)
	if err != nil {
		p.t.Fatal(err)
	}
	key := p.key
	if forged {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	return req.Body(), ecash.SignWithdraw(key, req, amount)
}

// withdraw asks for n coins from ctx (withdrawRequest).
func (p *policyBank) withdraw(ctx context.Context, n int, forged bool) error {
	p.t.Helper()
	body, sig := p.withdrawRequest(n, forged)
	_, err := p.b.Withdraw(ctx, body, sig)
	return err
}

// statement asks for the account's statement of the day from ctx, signed
// with the account's key, or with a stranger's if forged.
func (p *policyBank) statement(ctx context.Context, forged bool) error {
	p.t.Helper()
	key := p.key
	if forged {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	_, _, err := p.b.Statement(ctx, echeck.NewStatementRequest(p.acct, p.now.Add(-24*time.Hour), p.now, p.now, key).Encode())
	return err
}

// TestLimitRefusalInCurrency: a spending-limit refusal names amounts in
// the bank's currency, not minor units, and is still ErrOverLimit.
func TestLimitRefusalInCurrency(t *testing.T) {
	p := newPolicyBank(t)
	ctx := t.Context()
	if err := p.b.SetLimits(ctx, p.acct, bank.Limits{PerTransaction: 300, PerDay: 2000}); err != nil {
		t.Fatal(err)
	}
	err := p.withdraw(ctx, 4, false)
	if !errors.Is(err, bank.ErrOverLimit) || !strings.Contains(err.Error(), "EUR:4.00 exceeds the per-transaction limit of EUR:3.00") {
		t.Errorf("over the per-transaction limit: %v", err)
	}
	if err := p.b.SetLimits(ctx, p.acct, bank.Limits{PerDay: 250}); err != nil {
		t.Fatal(err)
	}
	if err := p.withdraw(ctx, 2, false); err != nil {
		t.Fatal(err)
	}
	err = p.withdraw(ctx, 1, false)
	if !errors.Is(err, bank.ErrOverLimit) || !strings.Contains(err.Error(), "EUR:1.00 more would exceed the daily limit of EUR:2.50 (spent EUR:2.00 today)") {
		t.Errorf("over the daily limit: %v", err)
	}
}

// TestLockPerSource: a stranger's forged requests naming an account lock
// it out for the stranger's source only: its holder, calling from
// elsewhere, still withdraws and gets statements; from the stranger's
// source the holder's own requests are refused, but a retry of a
// withdrawal that committed is still answered from its record; forgeries
// are refused as forgeries, locked or not. Unlock lifts the lock.
func TestLockPerSource(t *testing.T) {
	p := newPolicyBank(t)
	stranger := bank.WithSource(t.Context(), "203.0.113.7")
	holder := bank.WithSource(t.Context(), "198.51.100.1")
	done, doneSig := p.withdrawRequest(1, false)
	if _, err := p.b.Withdraw(stranger, done, doneSig); err != nil {
		t.Fatal(err)
	}
	for i := range bank.MaxAuthFailures {
		if err := p.withdraw(stranger, 1, true); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forgery %d: %v, want ErrUnauthorized", i+1, err)
		}
	}
	if err := p.withdraw(holder, 1, false); err != nil {
		t.Errorf("the holder's withdrawal from another source: %v", err)
	}
	if err := p.statement(holder, false); err != nil {
		t.Errorf("the holder's statement from another source: %v", err)
	}
	if err := p.withdraw(t.Context(), 1, false); err != nil {
		t.Errorf("a withdrawal with no source: %v", err)
	}
	if err := p.withdraw(stranger, 1, false); !errors.Is(err, bank.ErrAccountLocked) {
		t.Errorf("a withdrawal from the locked source: %v, want ErrAccountLocked", err)
	}
	if err := p.statement(stranger, false); !errors.Is(err, bank.ErrAccountLocked) {
		t.Errorf("a statement from the locked source: %v, want ErrAccountLocked", err)
	}
	if err := p.withdraw(stranger, 1, true); !errors.Is(err, bank.ErrUnauthorized) {
		t.Errorf("a forgery from the locked source: %v, want ErrUnauthorized", err)
	}
	if _, err := p.b.Withdraw(stranger, done, doneSig); err != nil {
		t.Errorf("a retry of a committed withdrawal from the locked source: %v", err)
	}
	// Forged statement requests count as well, from their own source.
	other := bank.WithSource(t.Context(), "192.0.2.9")
	for range bank.MaxAuthFailures {
		if err := p.statement(other, true); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forged statement request: %v", err)
		}
	}
	if err := p.statement(other, false); !errors.Is(err, bank.ErrAccountLocked) {
		t.Errorf("a statement after five forged ones from its source: %v, want ErrAccountLocked", err)
	}
	if err := p.b.Unlock(t.Context(), p.acct); err != nil {
		t.Fatal(err)
	}
	if err := p.withdraw(stranger, 1, false); err != nil {
		t.Errorf("a withdrawal after Unlock: %v", err)
	}
	if err := p.statement(other, false); err != nil {
		t.Errorf("a statement after Unlock: %v", err)
	}
}

// TestRateAfterSignature: requests with a bad signature do not use up the
// account's rate (its holder is not slowed down by a stranger's
// forgeries); signed ones do.
func TestRateAfterSignature(t *testing.T) {
	p := newPolicyBank(t)
	p.b.LimitAccounts(bank.NewRateLimiter(0.001, 2, 100))
	// Each from a source of its own, so that none is locked out.
	for i := range 10 {
		ctx := bank.WithSource(t.Context(), fmt.Sprintf("forger-%d", i))
		if err := p.withdraw(ctx, 1, true); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forged withdrawal %d: %v, want ErrUnauthorized", i+1, err)
		}
		if err := p.statement(ctx, true); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forged statement request %d: %v, want ErrUnauthorized", i+1, err)
		}
	}
	if err := p.withdraw(t.Context(), 1, false); err != nil {
		t.Fatalf("the holder's withdrawal after forgeries: %v", err)
	}
	if err := p.statement(t.Context(), false); err != nil {
		t.Fatalf("the holder's statement after forgeries: %v", err)
	}
	if err := p.withdraw(t.Context(), 1, false); !errors.Is(err, bank.ErrRateLimited) {
		t.Fatalf("a signed request beyond the rate: %v, want ErrRateLimited", err)
	}
}

// TestReplayKeepsRate: a replay of a captured withdrawal (its body and
// signature, valid) is answered from the record, and used up the
// account's rate as a new withdrawal would: whoever replayed one request
// kept its holder from withdrawing. A retry answered from the record
// signs nothing, and is no longer charged; a new withdrawal still is.
func TestReplayKeepsRate(t *testing.T) {
	p := newPolicyBank(t)
	p.b.LimitAccounts(bank.NewRateLimiter(0.001, 2, 100))
	body, sig := p.withdrawRequest(1, false)
	first, err := p.b.Withdraw(t.Context(), body, sig)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		again, err := p.b.Withdraw(t.Context(), body, sig)
		if err != nil {
			t.Fatalf("replay %d: %v; want the recorded answer", i+1, err)
		}
		if len(again) != len(first) {
			t.Fatalf("replay %d answered %d signatures, the withdrawal %d", i+1, len(again), len(first))
		}
	}
	if err := p.withdraw(t.Context(), 1, false); err != nil {
		t.Fatalf("the holder's withdrawal after replays: %v", err)
	}
	if err := p.withdraw(t.Context(), 1, false); !errors.Is(err, bank.ErrRateLimited) {
		t.Fatalf("a new withdrawal beyond the rate: %v, want ErrRateLimited", err)
	}
}

// TestLockedSourceRefusalNotRecorded: someone holding a copy of an
// account's signed withdraw request locks the account for their own
// source (MaxAuthFailures forgeries), then sends the request from there.
// The lock is about that source, not the request: its refusal
// (ErrAccountLocked) is not recorded under the request's hash, so the
// holder's own send of the request, from its source, is taken. Recorded,
// the stranger's refusal would be every later answer to the request,
// from any source.
func TestLockedSourceRefusalNotRecorded(t *testing.T) {
	p := newPolicyBank(t)
	stranger := bank.WithSource(t.Context(), "203.0.113.7")
	holder := bank.WithSource(t.Context(), "198.51.100.1")
	body, sig := p.withdrawRequest(1, false) // captured by the stranger
	for i := range bank.MaxAuthFailures {
		if err := p.withdraw(stranger, 1, true); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forgery %d: %v, want ErrUnauthorized", i+1, err)
		}
	}
	for range 2 {
		if _, err := p.b.Withdraw(stranger, body, sig); !errors.Is(err, bank.ErrAccountLocked) {
			t.Fatalf("the captured request from the locked source: %v, want ErrAccountLocked", err)
		}
	}
	if _, found, err := p.b.Store().Withdrawal(t.Context(), ecash.HashOf(body)); found || err != nil {
		t.Fatalf("after the locked source's sends: Withdrawal = found %v, %v; want nothing recorded", found, err)
	}
	sigs, err := p.b.Withdraw(holder, body, sig)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("the holder's own send of its request: %d signatures, %v; want it taken", len(sigs), err)
	}
	// Sent again from the locked source, it is answered from the record.
	if again, err := p.b.Withdraw(stranger, body, sig); err != nil || len(again) != 1 {
		t.Errorf("the committed request from the locked source: %v, want its signatures", err)
	}
}
