package node

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blindbank/blindbank/proto"
)

// TestMerchantHidesBankConnectionError: with its bank down, a merchant
// told the paying wallet its gRPC client's connection error, which names
// the bank's (internal) address: "transport: Error while dialing: dial
// tcp 127.0.0.1:…: connect: connection refused". The wallet is told
// Unavailable (it retries) with a fixed message.
func TestMerchantHidesBankConnectionError(t *testing.T) {
	e := startEnv(t)
	shop := e.startMerchant("shop")
	id := shop.order(t, "EUR:0.01")
	bankAddr := e.bank.Addr
	e.bank.Close() // the bank is down (or unreachable) for a moment
	_, err := shop.client.Pay(context.Background(), &pb.PayRequest{OrderId: id, SealedPayment: []byte("sealed")})
	t.Logf("the wallet is told: %v", err)
	msg := status.Convert(err).Message()
	if strings.Contains(msg, bankAddr) || strings.Contains(msg, "dial tcp") || strings.Contains(msg, "transport") {
		t.Errorf("a public caller of the merchant learns the bank's address and the merchant's connection error: %q", msg)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Pay with the bank down: %v; want Unavailable", err)
	}
}
