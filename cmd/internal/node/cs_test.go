package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestCSNonceLock: answering two different challenges for one CS nonce
// would reveal the denomination's private key, so the bank locks each nonce
// to the first blinded message it answers, in the same commit as the debit.
// A client that reuses a nonce with new challenges is refused, also when it
// races many of them at once; the same challenges in a new request are
// refused too (already signed); a retry of the same request is answered
// again.
func TestCSNonceLock(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	// Each refused challenge is a recorded refusal: some 60 here, past
	// the account's budget of them (20 at once, which the test's clock,
	// standing still, never refills), beyond which they are answered
	// RESOURCE_EXHAUSTED. Not what this tests (TestRateLimits does).
	e.bank.Bank.LimitRefusals(nil)
	bankc := e.dialBank()
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	acct := e.openAccount("mallory", acctKey.Public().(ed25519.PublicKey), false)
	e.credit(acct, "EUR:10.00")
	d := e.ks.Denominations[0] // EUR:0.01, CS
	if d.Key.Cipher() != ecash.CipherCS {
		t.Fatalf("denomination %s is %v, want cs", d.Value, d.Key.Cipher())
	}
	ps, _ := ecash.DerivePlanchet(seed, 0)
	prepared := e.prepare(t, bankc, d, ps)
	if again := e.prepare(t, bankc, d, ps); !bytes.Equal(again, prepared) {
		t.Fatal("PrepareWithdraw is not deterministic")
	}
	// blindFor blinds any message under the planchet's nonce: a different
	// message gives different challenges for the same nonce.
	blindFor := func(msg []byte) ecash.Planchet {
		blinded, _, err := d.Key.Blind(ps.BlindSeed, prepared, msg)
		if err != nil {
			t.Fatal(err)
		}
		return ecash.Planchet{Denom: d.ID, Blinded: blinded}
	}
	send := func(in *pb.WithdrawRequest) ([][]byte, error) {
		resp, err := bankc.Withdraw(ctx, in)
		if err != nil {
			return nil, err
		}
		return resp.BlindSignatures, nil
	}
	request := func(p ecash.Planchet) *pb.WithdrawRequest {
		req := &ecash.WithdrawRequest{Account: acct, CreatedAt: e.clock.Now(), Planchets: []ecash.Planchet{p}}
		rand.Read(req.Nonce[:])
		return &pb.WithdrawRequest{Body: req.Body(), AccountSig: ecash.SignWithdraw(acctKey, req, d.Value)}
	}
	withdraw := func(p ecash.Planchet) ([][]byte, error) { return send(request(p)) }

	first := blindFor(ps.CoinPub())
	firstReq := request(first)
	sigs, err := send(firstReq)
	if err != nil {
		t.Fatal(err)
	}
	balance := e.raw(acct)

	other := make([]byte, 32)
	rand.Read(other)
	if _, err := withdraw(blindFor(other)); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same nonce, new challenges: %v, want AlreadyExists", err)
	}
	if e.raw(acct) != balance {
		t.Fatal("a refused nonce reuse moved money")
	}
	// The same challenges in a new request are refused as already signed
	// (they would pay again for the coin); the request retried gets the
	// same answer: no second challenge is ever answered for the nonce.
	if _, err := withdraw(first); !bank.AlreadyIssued(err) {
		t.Fatalf("same challenges in a new request: %v, want ErrAlreadyIssued", err)
	}
	if e.raw(acct) != balance {
		t.Fatal("a refused blinded message signed before moved money")
	}
	again, err := send(firstReq)
	if err != nil || !bytes.Equal(again[0], sigs[0]) {
		t.Fatalf("the request retried: %v", err)
	}

	// Racing: many fresh planchets, each attacked with 20 different
	// challenges at once: exactly one answer per nonce.
	for i := uint64(1); i <= 3; i++ {
		ps, _ := ecash.DerivePlanchet(seed, i)
		prepared := e.prepare(t, bankc, d, ps)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for range 20 {
			wg.Go(func() {
				msg := make([]byte, 32)
				rand.Read(msg)
				blinded, _, err := d.Key.Blind(ps.BlindSeed, prepared, msg)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = withdraw(ecash.Planchet{Denom: d.ID, Blinded: blinded})
				mu.Lock()
				defer mu.Unlock()
				switch status.Code(err) {
				case codes.OK:
					wins++
				case codes.AlreadyExists:
				default:
					t.Errorf("racing challenge: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("nonce %d: %d different challenges answered, want 1", i, wins)
		}
	}
	totals, err := e.bank.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range totals {
		sum += v
	}
	if sum != 0 || totals[bank.AccountOutstanding] != 4 {
		t.Fatalf("ledger sum %d, outstanding %d; want 0 and 4 (four answered planchets of 0.01)", sum, totals[bank.AccountOutstanding])
	}
}
