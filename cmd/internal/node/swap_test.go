package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// swapParty holds what a test needs to build swap requests by hand.
type swapParty struct {
	e     *env
	t     *testing.T
	bankc pb.BankClient
	seed  []byte
	next  uint64
}

func newSwapParty(t *testing.T, e *env, bankc pb.BankClient) *swapParty {
	seed := make([]byte, 32)
	rand.Read(seed)
	return &swapParty{e: e, t: t, bankc: bankc, seed: seed}
}

func (p *swapParty) denom(value string) ecash.Denomination {
	for _, d := range p.e.ks.Denominations {
		if d.Value.String() == value {
			return d
		}
	}
	p.t.Fatalf("no denomination %s", value)
	return ecash.Denomination{}
}

// outputs blinds fresh planchets of the given values, returning the states
// that unblind the bank's answers.
func (p *swapParty) outputs(values ...string) ([]ecash.Planchet, []ecash.BlindState, []ecash.PlanchetSecret) {
	p.t.Helper()
	var (
		pls  []ecash.Planchet
		sts  []ecash.BlindState
		secs []ecash.PlanchetSecret
	)
	for _, v := range values {
		d := p.denom(v)
		ps, err := ecash.DerivePlanchet(p.seed, p.next)
		if err != nil {
			p.t.Fatal(err)
		}
		p.next++
		pl, st, err := ps.Blind(d, p.e.prepare(p.t, p.bankc, d, ps))
		if err != nil {
			p.t.Fatal(err)
		}
		pls, sts, secs = append(pls, pl), append(sts, st), append(secs, ps)
	}
	return pls, sts, secs
}

func (p *swapParty) request(coins []ecash.Coin, keys []ed25519.PrivateKey, outs []ecash.Planchet) *ecash.SwapRequest {
	p.t.Helper()
	values := make([]ecash.Amount, len(coins))
	for i, c := range coins {
		d, err := p.e.ks.Denomination(c.Denom)
		if err != nil {
			p.t.Fatal(err)
		}
		values[i] = d.Value
	}
	req, err := ecash.NewSwapRequest(coins, keys, values, outs, p.e.clock.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	return req
}

func (p *swapParty) swap(req *ecash.SwapRequest) ([][]byte, error) {
	resp, err := p.bankc.Swap(context.Background(), &pb.SwapRequest{Body: req.Body()})
	if err != nil {
		return nil, err
	}
	return resp.BlindSignatures, nil
}

func badSignature(err error) bool {
	return status.Code(err) == codes.InvalidArgument && strings.Contains(err.Error(), "bad signature")
}

// TestSwapProtocol drives the bank's Swap with hand-built requests over
// both ciphers: change is issued and verifies; a retry gets the same
// signatures; inputs signed over other outputs, unequal values, unknown or
// duplicated coins are refused and spend nothing; a swapped coin cannot be
// deposited (the proof names the swap), nor swapped again.
func TestSwapProtocol(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	p := newSwapParty(t, e, bankc)
	outstanding := e.raw(2)

	coin, key := e.rawCoin(t, bankc, "EUR:2.56") // RSA
	outs, states, secs := p.outputs("EUR:1.28", "EUR:0.64", "EUR:0.32", "EUR:0.16", "EUR:0.08", "EUR:0.04", "EUR:0.02", "EUR:0.01", "EUR:0.01")
	req := p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, outs)

	// Refusals first: each must leave the coin unspent.
	tampered := *req
	tampered.Outputs = append([]ecash.Planchet(nil), outs...)
	tampered.Outputs[0], tampered.Outputs[1] = outs[1], outs[0]
	if _, err := p.swap(&tampered); !badSignature(err) {
		t.Errorf("inputs signed over other outputs: %v, want a bad signature", err)
	}
	short := p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, outs[:len(outs)-1])
	if _, err := p.swap(short); status.Code(err) != codes.InvalidArgument {
		t.Errorf("outputs worth less than the inputs: %v, want InvalidArgument", err)
	}
	dup := p.request([]ecash.Coin{coin, coin}, []ed25519.PrivateKey{key, key}, append(outs, outs...))
	if _, err := p.swap(dup); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a coin twice: %v, want InvalidArgument", err)
	}
	fakeKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	fake := ecash.Coin{Denom: coin.Denom, Pub: fakeKey.Public().(ed25519.PublicKey), Sig: coin.Sig}
	if _, err := p.swap(p.request([]ecash.Coin{fake}, []ed25519.PrivateKey{fakeKey}, outs)); !badSignature(err) {
		t.Errorf("a coin the bank never signed: %v, want a bad signature", err)
	}

	sigs, err := p.swap(req)
	if err != nil {
		t.Fatal(err)
	}
	var newCoins []ecash.Coin
	for i, st := range states {
		sig, err := st.Unblind(sigs[i])
		if err != nil {
			t.Fatalf("output %d: %v", i, err)
		}
		c := ecash.Coin{Denom: outs[i].Denom, Pub: secs[i].CoinPub(), Sig: sig}
		d, _ := e.ks.Denomination(c.Denom)
		if err := c.Verify(d.Key); err != nil {
			t.Fatalf("output %d does not verify: %v", i, err)
		}
		newCoins = append(newCoins, c)
	}
	again, err := p.swap(req)
	if err != nil || len(again) != len(sigs) || !bytes.Equal(again[0], sigs[0]) {
		t.Fatalf("retry: %v; want the same signatures", err)
	}
	if got := e.raw(2); got != outstanding+256 {
		t.Errorf("outstanding e-cash %d, want %d: a swap moves no money", got, outstanding+256)
	}

	// The swapped coin is spent: a second swap of it gets a proof naming
	// the first swap, signed by the coin.
	outs2, _, _ := p.outputs("EUR:1.28", "EUR:1.28")
	_, err = p.swap(p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, outs2))
	ds := wallet.DoubleSpendFromError(err)
	if ds == nil {
		t.Fatalf("second swap of a coin: %v, want a double-spend proof", err)
	}
	if err := ds.Proof.Verify(e.ks); err != nil {
		t.Fatalf("proof: %v", err)
	}
	if ds.Proof.Earlier.MerchantAccount != ecash.SwapAccount || ds.Proof.Earlier.PaymentHash != req.OutputsHash() {
		t.Errorf("proof names account %d, hash %x; want the swap", ds.Proof.Earlier.MerchantAccount, ds.Proof.Earlier.PaymentHash[:8])
	}
	// The new coins are good: one is swapped again (CS input, CS outputs).
	small := newCoins[len(newCoins)-2] // EUR:0.01
	smallKey := secs[len(secs)-2].CoinKey
	outs3, _, _ := p.outputs("EUR:0.01")
	if _, err := p.swap(p.request([]ecash.Coin{small}, []ed25519.PrivateKey{smallKey}, outs3)); err != nil {
		t.Fatalf("swapping a coin from a swap: %v", err)
	}
}

// TestSwapNonceSharedWithWithdraw: a CS nonce answered in a withdrawal
// cannot be answered again, for another challenge, in a swap.
func TestSwapNonceSharedWithWithdraw(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	coin, key := e.rawCoin(t, bankc, "EUR:0.01") // CS
	d := e.ks.Denominations[0]
	// rawCoin used planchet 0 of its own seed; re-blind a new message under
	// a nonce the bank already answered: take a second raw withdrawal's
	// planchet and a different coin key.
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	acct := e.openAccount("w", acctKey.Public().(ed25519.PublicKey), false)
	e.credit(acct, "EUR:0.01")
	ps, _ := ecash.DerivePlanchet(seed, 0)
	prepared := e.prepare(t, bankc, d, ps)
	pl, _, err := ps.Blind(d, prepared)
	if err != nil {
		t.Fatal(err)
	}
	wreq := &ecash.WithdrawRequest{Account: acct, CreatedAt: e.clock.Now(), Planchets: []ecash.Planchet{pl}}
	body := wreq.Body()
	if _, err := bankc.Withdraw(context.Background(), &pb.WithdrawRequest{Body: body, AccountSig: ecash.SignWithdraw(acctKey, wreq, d.Value)}); err != nil {
		t.Fatal(err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	reused, _, err := d.Key.Blind(ps.BlindSeed, prepared, other)
	if err != nil {
		t.Fatal(err)
	}
	p := newSwapParty(t, e, bankc)
	req := p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, []ecash.Planchet{{Denom: d.ID, Blinded: reused}})
	if _, err := p.swap(req); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("swap answering a withdrawn nonce anew: %v, want AlreadyExists", err)
	}
	// Nothing was spent by the refusal.
	outs, _, _ := p.outputs("EUR:0.01")
	if _, err := p.swap(p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, outs)); err != nil {
		t.Fatalf("coin after a refused swap: %v", err)
	}
}

// TestConcurrentSwapsOfOneCoin: many swaps of one coin at once, each for
// its own outputs: exactly one is answered.
func TestConcurrentSwapsOfOneCoin(t *testing.T) {
	e := startEnv(t)
	bankc := e.dialBank()
	coin, key := e.rawCoin(t, bankc, "EUR:0.02")
	p := newSwapParty(t, e, bankc)
	const n = 16
	reqs := make([]*ecash.SwapRequest, n)
	for i := range reqs {
		outs, _, _ := p.outputs("EUR:0.01", "EUR:0.01")
		reqs[i] = p.request([]ecash.Coin{coin}, []ed25519.PrivateKey{key}, outs)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range reqs {
		wg.Go(func() { _, errs[i] = p.swap(reqs[i]) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case wallet.DoubleSpendFromError(err) == nil:
			t.Errorf("swap %d: %v, want success or a double-spend proof", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d swaps of one coin answered, want 1", won)
	}
}
