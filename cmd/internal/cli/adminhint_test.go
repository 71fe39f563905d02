package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/blindbank/blindbank/proto"
)

// TestAdminExplainNotListening: an admin call to an address where nothing
// listens says the daemon may not be running, wrapped or not; a status the
// peer itself sent, whatever its text, gets no such hint.
func TestAdminExplainNotListening(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := lis.Addr().String()
	lis.Close()
	call := func(addr string) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = pb.NewMerchantAdminClient(conn).VerifyLog(context.Background(), &pb.VerifyLogRequest{})
		return err
	}
	a := &AdminFlags{What: "merchant"}
	const hint = "is merchantd serve running?"

	refused := call(free)
	if status.Code(refused) != codes.Unavailable {
		t.Fatalf("nothing listening: %v", refused)
	}
	for _, err := range []error{refused, fmt.Errorf("the audit log was not checked: %w", refused)} {
		if got := a.Explain(err); !strings.Contains(got.Error(), hint) || status.Code(got) != codes.Unavailable {
			t.Errorf("%v: explained as %v, want the hint and the status kept", err, got)
		}
	}

	// A running merchant that could not reach its bank answers
	// Unavailable itself, quoting the refused connection.
	lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "merchant: the bank is unreachable: "+status.Convert(refused).Message())
	}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	peer := call(lis.Addr().String())
	if status.Code(peer) != codes.Unavailable || !strings.Contains(peer.Error(), "connection refused") {
		t.Fatalf("the peer's own status: %v", peer)
	}
	if got := a.Explain(peer); strings.Contains(got.Error(), hint) {
		t.Errorf("the peer's own status explained as %v", got)
	}
}
