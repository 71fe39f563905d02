package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestBadInput sends hostile requests to a real bank over gRPC. Each must be
// refused with the right code and move no money.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shop := e.startMerchant("shop")
	bankc := e.dialBank()

	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	acct := e.openAccount("mallory", acctKey.Public().(ed25519.PublicKey), false)
	e.credit(acct, "EUR:5.00")
	coin, coinKey := e.rawCoin(t, bankc, "EUR:0.04")

	denom := e.ks.Denominations[0] // EUR:0.01
	planchet := func(i uint64) ecash.Planchet {
		ps, _ := ecash.DerivePlanchet(seed, i)
		p, _, err := ps.Blind(denom, e.prepare(t, bankc, denom, ps))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	withdraw := func(ps []ecash.Planchet, mutate func(body, sig []byte) ([]byte, []byte)) error {
		req := &ecash.WithdrawRequest{Account: acct, CreatedAt: e.clock.Now(), Planchets: ps}
		rand.Read(req.Nonce[:])
		body := req.Body()
		amount, _ := e.ks.WithdrawAmount(req) // an unknown denomination: refused before the signature
		sig := ecash.SignWithdraw(acctKey, req, amount)
		if mutate != nil {
			body, sig = mutate(body, sig)
		}
		_, err := bankc.Withdraw(ctx, &pb.WithdrawRequest{Body: body, AccountSig: sig})
		return err
	}
	order := func(amount string) *pb.GetPaymentRequestResponse {
		id := shop.order(t, amount)
		resp, err := shop.client.GetPaymentRequest(ctx, &pb.GetPaymentRequestRequest{OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	deposit := func(pr *pb.GetPaymentRequestResponse, sealed []byte) error {
		_, err := bankc.Deposit(ctx, &pb.DepositRequest{PaymentRequest: pr.PaymentRequest, MerchantSig: pr.MerchantSig, SealedPayment: sealed})
		return err
	}
	good := func(pr *pb.GetPaymentRequestResponse) []byte {
		return e.seal(t, pr.PaymentRequest, []ecash.Coin{coin}, []ed25519.PrivateKey{coinKey})
	}

	cases := []struct {
		name string
		want codes.Code
		run  func() error
	}{
		{"unknown denomination", codes.NotFound, func() error {
			p := planchet(1)
			p.Denom[0] ^= 1
			return withdraw([]ecash.Planchet{p}, nil)
		}},
		{"tampered account signature", codes.Unauthenticated, func() error {
			return withdraw([]ecash.Planchet{planchet(2)}, func(b, s []byte) ([]byte, []byte) { s[0] ^= 1; return b, s })
		}},
		{"body altered after signing", codes.Unauthenticated, func() error {
			return withdraw([]ecash.Planchet{planchet(3)}, func(b, s []byte) ([]byte, []byte) { b[len(b)-1] ^= 1; return b, s })
		}},
		{"truncated withdraw body", codes.InvalidArgument, func() error {
			return withdraw([]ecash.Planchet{planchet(4)}, func(b, s []byte) ([]byte, []byte) { return b[:len(b)-3], s })
		}},
		{"oversized batch", codes.InvalidArgument, func() error {
			ps := make([]ecash.Planchet, ecash.MaxCoinsPerRequest+1)
			for i := range ps {
				ps[i] = ecash.Planchet{Denom: denom.ID, Blinded: make([]byte, 256)}
			}
			return withdraw(ps, nil)
		}},
		{"wrong-size blinded message", codes.InvalidArgument, func() error {
			return withdraw([]ecash.Planchet{{Denom: denom.ID, Blinded: make([]byte, 17)}}, nil)
		}},
		{"insufficient funds", codes.FailedPrecondition, func() error {
			ps := make([]ecash.Planchet, 0, 5)
			big := e.ks.Denominations[len(e.ks.Denominations)-1] // EUR:10.24 > EUR:5.00
			p, _, err := func() (ecash.Planchet, ecash.BlindState, error) {
				s, _ := ecash.DerivePlanchet(seed, 5)
				return s.Blind(big, nil)
			}()
			if err != nil {
				t.Fatal(err)
			}
			return withdraw(append(ps, p), nil)
		}},
		{"tampered coin signature", codes.InvalidArgument, func() error {
			bad := coin
			bad.Sig = append([]byte(nil), coin.Sig...)
			bad.Sig[40] ^= 1
			pr := order("EUR:0.04")
			return deposit(pr, e.seal(t, pr.PaymentRequest, []ecash.Coin{bad}, []ed25519.PrivateKey{coinKey}))
		}},
		{"deposit permission signed by another key", codes.InvalidArgument, func() error {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			pr := order("EUR:0.04")
			return deposit(pr, e.seal(t, pr.PaymentRequest, []ecash.Coin{coin}, []ed25519.PrivateKey{other}))
		}},
		{"tampered merchant signature", codes.Unauthenticated, func() error {
			pr := order("EUR:0.04")
			sealed := good(pr)
			pr.MerchantSig[0] ^= 1
			return deposit(pr, sealed)
		}},
		{"sealed for another payment request", codes.InvalidArgument, func() error {
			prA, prB := order("EUR:0.04"), order("EUR:0.04")
			return deposit(prB, good(prA))
		}},
		{"coins do not add up", codes.InvalidArgument, func() error {
			pr := order("EUR:0.08")
			return deposit(pr, good(pr))
		}},
		{"garbage sealed payment", codes.InvalidArgument, func() error {
			return deposit(order("EUR:0.04"), make([]byte, 100))
		}},
		{"wrong currency", codes.InvalidArgument, func() error {
			_, err := shop.admin.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: "USD:1.00", Summary: "x"})
			return err
		}},
		{"bad amount syntax", codes.InvalidArgument, func() error {
			_, err := shop.admin.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: "EUR:1.234", Summary: "x"})
			return err
		}},
		{"unknown order", codes.NotFound, func() error {
			_, err := shop.client.Pay(ctx, &pb.PayRequest{OrderId: "ord-nope", SealedPayment: []byte{1}})
			return err
		}},
		{"admin call without token", codes.Unauthenticated, func() error {
			conn, err := dialPlain(e.bank.AdminAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = pb.NewBankAdminClient(conn).Credit(ctx, &pb.CreditRequest{Account: acct, Amount: "EUR:1000.00"})
			return err
		}},
	}
	snapshot := func() [4]int64 {
		return [4]int64{e.raw(acct), e.raw(shop.account), e.raw(bank.AccountOutstanding), e.raw(bank.AccountFunding)}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot()
			err := c.run()
			if got := status.Code(err); got != c.want {
				t.Fatalf("code %v (%v), want %v", got, err, c.want)
			}
			if after := snapshot(); after != before {
				t.Fatalf("balances moved: %v -> %v", before, after)
			}
		})
	}

	// The good coin is still spendable after all that.
	pr := order("EUR:0.04")
	if err := deposit(pr, good(pr)); err != nil {
		t.Fatalf("honest deposit after the attacks: %v", err)
	}

	// Expired denomination: two years on, the bank issues no coins of keys
	// whose withdraw window closed, and accepts none past the deposit window.
	late := planchet(9)
	e.clock.Advance(2 * 365 * 24 * time.Hour)
	if err := withdraw([]ecash.Planchet{late}, nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("withdraw with an expired denomination: %v", err)
	}
	e.clock.Advance(2 * 365 * 24 * time.Hour)
	coin2, key2 := coin, coinKey // spent already, but the window check comes first
	pr = order("EUR:0.04")
	if err := deposit(pr, e.seal(t, pr.PaymentRequest, []ecash.Coin{coin2}, []ed25519.PrivateKey{key2})); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deposit past the deposit window: %v", err)
	}
}
