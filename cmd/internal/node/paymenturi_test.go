package node

import (
	"context"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// TestPaymentURI: an order's payment URI names the merchant's listener (or
// the configured public address, and none for a wildcard listener), and a
// wallet pays from it over gRPC without fetching the request.
func TestPaymentURI(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	shop := e.startMerchant("uri shop")
	created, err := shop.admin.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: "EUR:1.50", Summary: "a croissant"})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := ecash.ParsePaymentURI(created.PaymentUri)
	if err != nil {
		t.Fatalf("URI %q: %v", created.PaymentUri, err)
	}
	if offer.Merchant != shop.node.Addr || offer.Summary != "a croissant" {
		t.Fatalf("URI names %q (listening on %s), summary %q", offer.Merchant, shop.node.Addr, offer.Summary)
	}
	if st := shop.status(t, created.OrderId); st.PaymentUri != created.PaymentUri {
		t.Fatalf("status gives URI %q, create gave %q", st.PaymentUri, created.PaymentUri)
	}

	w := e.newWallet(t.TempDir(), "EUR:10.00")
	defer w.Close()
	bankc := e.dialBank()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:3.00"), nil); err != nil {
		t.Fatal(err)
	}
	rcpt, err := w.PayOffer(ctx, bankc, shop.client, offer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Total.String() != "EUR:1.50" || rcpt.MerchantAccount != shop.account {
		t.Fatalf("receipt for %s to %d", rcpt.Total, rcpt.MerchantAccount)
	}
	if st := shop.status(t, created.OrderId); st.Status != "paid" {
		t.Fatalf("order %s", st.Status)
	}

	// A wildcard listener names no address wallets can dial: no URI,
	// unless the public address is configured.
	for _, public := range []string{"", "shop.example:7543"} {
		dir := t.TempDir()
		pub, err := merchant.Init(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := StartMerchant(ctx, MerchantConfig{
			Dir: dir, BankAddr: e.bank.Addr, BankTLS: transport.ClientConfig{CAFile: e.bank.CertFile},
			Account: e.openAccount("wildcard shop"+public, pub, true), Listen: "0.0.0.0:0", AdminListen: "127.0.0.1:0",
			Now: e.clock.Now, PublicAddr: public,
		})
		if err != nil {
			t.Fatal(err)
		}
		o, err := m.Merchant.CreateOrder(mustAmount(t, "EUR:1.00"), "tea", 0)
		if err != nil {
			t.Fatal(err)
		}
		uri := m.Merchant.PaymentURI(o)
		m.Close()
		switch {
		case public == "" && uri != "":
			t.Errorf("a wildcard listener's URI %q", uri)
		case public != "":
			if got, err := ecash.ParsePaymentURI(uri); err != nil || got.Merchant != public {
				t.Errorf("URI %q names %v (%v), want %s", uri, got, err, public)
			}
		}
	}
	if _, err := StartMerchant(ctx, MerchantConfig{Dir: shop.dir, BankAddr: e.bank.Addr, BankTLS: transport.ClientConfig{CAFile: e.bank.CertFile},
		Account: shop.account, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", PublicAddr: "no port"}); err == nil || !strings.Contains(err.Error(), "public address") {
		t.Fatalf("a bad public address: %v", err)
	}
}
