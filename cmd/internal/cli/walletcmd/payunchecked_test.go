package walletcmd

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// keysDownBank serves a real bank, but fails GetKeys while down is set.
type keysDownBank struct {
	pb.BankServer
	down *atomic.Bool
}

func (b *keysDownBank) GetKeys(ctx context.Context, in *pb.GetKeysRequest) (*pb.GetKeysResponse, error) {
	if b.down.Load() {
		return nil, status.Error(codes.Unavailable, "key set unreachable (simulated)")
	}
	return b.BankServer.GetKeys(ctx, in)
}

// resigningShop serves a real merchant, but while resign is set its
// receipts come signed by a key the wallet's key set does not list, as
// after a rotation of the bank's signing key the wallet has not fetched.
type resigningShop struct {
	pb.MerchantServer
	resign *atomic.Bool
}

func (m *resigningShop) Pay(ctx context.Context, in *pb.PayRequest) (*pb.PayResponse, error) {
	resp, err := m.MerchantServer.Pay(ctx, in)
	if err != nil || !m.resign.Load() {
		return resp, err
	}
	resp.Receipt, err = unlistedSigner(resp.Receipt)
	return resp, err
}

// TestPayReceiptUnchecked: a receipt signed by a key the wallet's key set
// does not list, with the bank's key set out of reach, cannot be checked:
// 'wallet pay' says so and to run it again (exit 1; --json "error":
// "pending"), the coins pending. It said "merchant returned a bad
// receipt" and nothing of running it again. Run again once the key set
// is reachable, it completes.
func TestPayReceiptUnchecked(t *testing.T) {
	ctx := context.Background()
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	var keysDown, resign atomic.Bool
	bankRelay := record(t, func(s *grpc.Server) {
		pb.RegisterBankServer(s, &keysDownBank{BankServer: b.Bank.PublicServer(), down: &keysDown})
	})
	shop := record(t, func(s *grpc.Server) {
		pb.RegisterMerchantServer(s, &resigningShop{MerchantServer: m.Merchant.PublicServer(), resign: &resign})
	})
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, bankRelay.Addr, "EUR:10.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	// The key set fetched a little while ago, past the bound within
	// which an unknown signer does not make the wallet fetch it again.
	w, err := wallet.Open(dir, wallet.Options{Now: func() time.Time { return time.Now().Add(-time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := w.RefreshKeys(ctx, pb.NewBankClient(conn)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pay := []string{"--wallet", dir, "pay", "--yes", "--merchant", shop.Addr, "--merchant-plaintext", "--order", o.ID}
	keysDown.Store(true)
	resign.Store(true)
	r := runWallet(t, env, pay...)
	if r.code != 1 || !strings.Contains(r.stderr, "could not be checked yet") || !strings.Contains(r.stderr, "key set unreachable (simulated)") ||
		!strings.Contains(r.stderr, "re-run the same command") || strings.Contains(r.stderr, "bad receipt") {
		t.Fatalf("pay with a receipt that cannot be checked: %+v; want it pending, to be run again", r)
	}
	r = runWallet(t, env, append(pay, "--json")...)
	var out struct{ Error string }
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Error != "pending" {
		t.Fatalf("pay --json with a receipt that cannot be checked: %+v; want \"error\": \"pending\"", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:1.00"`) {
		t.Fatalf("balance: %+v; want the payment pending", r)
	}
	keysDown.Store(false)
	resign.Store(false)
	if r := runWallet(t, env, pay...); r.code != 0 || !strings.Contains(r.stdout, "paid EUR:1.00 for order "+o.ID) || !strings.Contains(r.stdout, "fresh EUR:2.50") {
		t.Fatalf("pay run again: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) {
		t.Fatalf("balance after: %+v; want nothing pending", r)
	}
}
