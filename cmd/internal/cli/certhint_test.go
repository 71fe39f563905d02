package cli

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/blindbank/blindbank/proto"
)

// TestCertHintNotForPeerStatus: a status the peer itself sent came over a
// connection whose certificate verified, so it is not explained as a
// certificate failure, whatever its text says (a merchant's Unavailable
// quoting an x509 error, say); its text and code pass unchanged.
func TestCertHintNotForPeerStatus(t *testing.T) {
	const msg = `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, msg)
	}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		CertHintOption("merchant", "--merchant-ca or --merchant-pin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, err = pb.NewBankClient(conn).GetKeys(context.Background(), &pb.GetKeysRequest{})
	if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), "did not verify: ") || status.Convert(err).Message() != msg {
		t.Fatalf("the peer's own Unavailable: %v, want it unchanged", err)
	}
}
