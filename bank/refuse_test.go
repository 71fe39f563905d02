package bank_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// countingKey counts the blind signatures its denomination key makes.
type countingKey struct {
	ecash.DenomPrivateKey
	signed *atomic.Int64
}

func (k countingKey) BlindSign(blinded []byte) ([]byte, error) {
	k.signed.Add(1)
	return k.DenomPrivateKey.BlindSign(blinded)
}

// TestRefusedBeforeSigning: requests the commit would refuse are refused
// before the bank blind-signs anything, where signing costs more than
// the checks (a denial of service otherwise): a withdrawal whose last RSA
// planchet is malformed, one beyond the account's balance, a swap
// replaying a spent coin for more outputs (or its inputs reordered),
// a swap whose outputs are worth more than its inputs could be (refused
// before its signatures are checked), a withdrawal or swap of planchets the
// bank signed in another request. A swap retried concurrently is still
// answered, every time, with the same signatures.
func TestRefusedBeforeSigning(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	keys, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: eur(4), Cipher: ecash.CipherCS}, {Value: eur(1), Cipher: ecash.CipherRSA},
	}}, now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signed := new(atomic.Int64)
	for i := range keys.Denoms {
		keys.Denoms[i].Private = countingKey{keys.Denoms[i].Private, signed}
	}
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := bank.New(s, keys, clock, nil)
	ctx := t.Context()
	if err := b.PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	ks, _ := b.KeySet()
	var cs, rsa ecash.Denomination
	for _, d := range ks.Denominations {
		if d.Key.Cipher() == ecash.CipherCS {
			cs = d
		} else {
			rsa = d
		}
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, err := ecash.DeriveAccountKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := b.OpenAccount(ctx, "customer", acctKey.Public().(ed25519.PublicKey), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Credit(ctx, acct, eur(100), "test", ""); err != nil {
		t.Fatal(err)
	}
	next := uint64(0)
	planchet := func(d ecash.Denomination) (ecash.Planchet, ecash.PlanchetSecret, ecash.BlindState) {
		t.Helper()
		ps, err := ecash.DerivePlanchet(seed, next)
		if err != nil {
			t.Fatal(err)
		}
		next++
		var prepared []byte
		if r := ps.PrepareRequest(d); r != nil {
			answers, err := b.PrepareWithdraw([]bank.PrepareItem{{Denom: d.ID, Request: r}})
			if err != nil {
				t.Fatal(err)
			}
			prepared = answers[0]
		}
		p, st, err := ps.Blind(d, prepared)
		if err != nil {
			t.Fatal(err)
		}
		return p, ps, st
	}
	withdraw := func(ps []ecash.Planchet) ([][]byte, error) {
		req := &ecash.WithdrawRequest{Account: acct, CreatedAt: now, Planchets: ps}
		rand.Read(req.Nonce[:])
		amount, err := ks.WithdrawAmount(req)
		if err != nil {
			t.Fatal(err)
		}
		return b.Withdraw(ctx, req.Body(), ecash.SignWithdraw(acctKey, req, amount))
	}
	csCoin := func() (ecash.Coin, ed25519.PrivateKey) {
		t.Helper()
		p, ps, st := planchet(cs)
		sigs, err := withdraw([]ecash.Planchet{p})
		if err != nil {
			t.Fatal(err)
		}
		sig, err := st.Unblind(sigs[0])
		if err != nil {
			t.Fatal(err)
		}
		return ecash.Coin{Denom: cs.ID, Pub: ps.CoinPub(), Sig: sig}, ps.CoinKey
	}
	rsaOutputs := func(n int) []ecash.Planchet {
		out := make([]ecash.Planchet, n)
		for i := range out {
			out[i], _, _ = planchet(rsa)
		}
		return out
	}
	swap := func(c ecash.Coin, k ed25519.PrivateKey, outs []ecash.Planchet) *ecash.SwapRequest {
		req, err := ecash.NewSwapRequest([]ecash.Coin{c}, []ed25519.PrivateKey{k}, []ecash.Amount{cs.Value}, outs, now)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	expect := func(what string, want int64) {
		t.Helper()
		if got := signed.Load(); got != want {
			t.Fatalf("%s: %d blind signatures made in all, want %d", what, got, want)
		}
	}

	// A withdrawal whose last planchet is not below N.
	bad := rsaOutputs(8)
	bad[7].Blinded = bytes.Repeat([]byte{0xff}, len(bad[7].Blinded))
	if _, err := withdraw(bad); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("a planchet not below N: %v, want ErrMalformed", err)
	}
	expect("a withdrawal with a bad last planchet", 0)

	// An account without the money.
	poorKey, err := ecash.DeriveAccountKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	poor, err := b.OpenAccount(ctx, "poor", poorKey.Public().(ed25519.PublicKey), false)
	if err != nil {
		t.Fatal(err)
	}
	broke := &ecash.WithdrawRequest{Account: poor, CreatedAt: now, Planchets: rsaOutputs(8)}
	amount, err := ks.WithdrawAmount(broke)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Withdraw(ctx, broke.Body(), ecash.SignWithdraw(poorKey, broke, amount)); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("a withdrawal beyond the balance: %v, want ErrInsufficientFunds", err)
	}
	expect("a withdrawal beyond the balance", 0)

	// A coin swapped, then replayed with fresh outputs.
	coin, key := csCoin()
	if _, err := b.Swap(ctx, swap(coin, key, rsaOutputs(4)).Body()); err != nil {
		t.Fatal(err)
	}
	expect("a withdrawal of one coin and its swap for four", 5)
	var ds *ecash.DoubleSpendError
	if _, err := b.Swap(ctx, swap(coin, key, rsaOutputs(4)).Body()); !errors.As(err, &ds) {
		t.Fatalf("a spent coin swapped again: %v, want a double-spend proof", err)
	}
	if err := ds.Proof.Verify(ks); err != nil {
		t.Fatalf("the proof: %v", err)
	}
	expect("a spent coin replayed", 5)

	// Two coins swapped, then the same request with its inputs in the other
	// order: the same permissions, another request hash.
	c1, k1 := csCoin()
	c2, k2 := csCoin()
	pair, err := ecash.NewSwapRequest([]ecash.Coin{c1, c2}, []ed25519.PrivateKey{k1, k2}, []ecash.Amount{cs.Value, cs.Value}, rsaOutputs(8), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Swap(ctx, pair.Body()); err != nil {
		t.Fatal(err)
	}
	expect("two withdrawals and their swap for eight", 15)
	reordered := *pair
	reordered.Inputs = []ecash.SwapInput{pair.Inputs[1], pair.Inputs[0]}
	if _, err := b.Swap(ctx, reordered.Body()); !errors.As(err, &ds) {
		t.Fatalf("the swap replayed with its inputs reordered: %v, want a double-spend proof", err)
	}
	expect("a swap replayed with its inputs reordered", 15)

	// Outputs worth more than the input: refused before the input's
	// signatures are checked (they are bad here).
	coin2, key2 := csCoin()
	greedy := swap(coin2, key2, rsaOutputs(5))
	greedy.Inputs[0].CoinSig = make([]byte, ed25519.SignatureSize)
	if _, err := b.Swap(ctx, greedy.Body()); !errors.Is(err, bank.ErrAmountMatch) {
		t.Fatalf("outputs worth more than the input could be: %v, want ErrAmountMatch", err)
	}
	expect("a greedy swap", 16)

	// Concurrent retries of one swap: its own spend is no double spend.
	outs := rsaOutputs(4)
	body := swap(coin2, key2, outs).Body()
	concurrentRetries(t, func() ([][]byte, error) { return b.Swap(ctx, body) })
	base := signed.Load() // retries racing the first commit sign too

	// Planchets signed before, in a new request (a wallet whose planchet
	// counter went back): refused, nothing signed, debited or spent.
	bal, err := b.Store().Account(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := withdraw(append(rsaOutputs(1), outs[1])); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Fatalf("a withdrawal of a planchet a swap got signed: %v, want ErrAlreadyIssued", err)
	}
	coin3, key3 := csCoin()
	if _, err := b.Swap(ctx, swap(coin3, key3, outs).Body()); !errors.Is(err, bank.ErrAlreadyIssued) {
		t.Fatalf("a swap of planchets a swap got signed: %v, want ErrAlreadyIssued", err)
	}
	expect("planchets signed before, sent again (and a withdrawal of one)", base+1)
	if after, err := b.Store().Account(ctx, acct); err != nil || after.Balance != bal.Balance-int64(cs.Value.Value+cs.Fees.Withdraw.Value) {
		t.Fatalf("balance %d after the refusals and one withdrawal of %s, was %d (%v)", after.Balance, cs.Value, bal.Balance, err)
	}
	if _, err := b.Swap(ctx, swap(coin3, key3, rsaOutputs(4)).Body()); err != nil {
		t.Fatalf("the refused swap's input spent: %v", err)
	}
}

// concurrentRetries calls one request from 8 goroutines at once: every
// call must be answered, with the same blind signatures.
func concurrentRetries(t *testing.T, call func() ([][]byte, error)) {
	t.Helper()
	const n = 8
	answers := make([][][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i], errs[i] = call() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("retry %d: %v", i, errs[i])
		}
		for j := range answers[i] {
			if !bytes.Equal(answers[i][j], answers[0][j]) {
				t.Fatalf("retry %d answered other signatures", i)
			}
		}
	}
}

// TestRecoupReissueRefusedBeforeSigning: a coin from a swap, of a revoked
// denomination, is recouped by re-issue; replayed with fresh outputs (more
// than one, RSA: Swap's rule for looking its inputs up first), each replay
// is refused with a double-spend proof before the bank blind-signs any
// output. Concurrent retries of the recoup itself are still answered, every
// time, with the same signatures.
func TestRecoupReissueRefusedBeforeSigning(t *testing.T) {
	signed := new(atomic.Int64)
	const dearValue = 4
	e := newRecoupEnv(t, ecash.CipherRSA, dearValue, dearValue, func(k ecash.DenomPrivateKey) ecash.DenomPrivateKey {
		return countingKey{k, signed}
	})
	ctx := t.Context()
	// A dear coin, swapped for another: that one comes from a swap.
	c0, ps0 := e.coin(0, e.dear)
	p, ps, st := e.planchet(1, e.dear.Denomination, e.dear.Private)
	sigs, err := e.swap([]ecash.Coin{c0}, []ed25519.PrivateKey{ps0.CoinKey}, []ecash.Amount{e.dear.Value}, []ecash.Planchet{p})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := st.Unblind(sigs[0])
	if err != nil {
		t.Fatal(err)
	}
	coin := ecash.Coin{Denom: e.dear.ID, Pub: ps.CoinPub(), Sig: sig}
	dear := e.revokeDear()
	recoup := func(outs []ecash.Planchet, at time.Time) []byte {
		return ecash.NewRecoupRequest(coin, ps.CoinKey, dear.Value, ps.BlindSeed, outs, at).Encode()
	}

	body := recoup(e.outputs(10, dearValue), e.now)
	concurrentRetries(t, func() ([][]byte, error) {
		r, err := e.b.Recoup(ctx, body)
		if err != nil {
			return nil, err
		}
		return r.BlindSigs, nil
	})

	before := signed.Load()
	ks, _ := e.b.KeySet()
	for i := range 3 {
		_, err := e.b.Recoup(ctx, recoup(e.outputs(uint64(100+10*i), dearValue), e.now.Add(time.Duration(i+1)*time.Millisecond)))
		var ds *ecash.DoubleSpendError
		if !errors.As(err, &ds) {
			t.Fatalf("replay %d of a recouped coin with fresh outputs: %v, want a double-spend proof", i, err)
		}
		if err := ds.Proof.Verify(ks); err != nil {
			t.Fatalf("the proof: %v", err)
		}
	}
	if got := signed.Load() - before; got != 0 {
		t.Errorf("3 replays of a recouped coin, all refused, made the bank compute %d blind signatures", got)
	}
}
