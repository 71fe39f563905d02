package cli

import (
	"context"
	"crypto/tls"
	"errors"
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

// TestCertHintReasonNeverEmpty: a certificate failure whose text carries
// no reason after its prefixes (or whose verifier error says nothing) still
// gets a hint that says something after the colon; one with a reason keeps
// it.
func TestCertHintReasonNeverEmpty(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"flattened, cut after the prefix", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: "`), "no reason given"},
		{"verifier error with no text", &tls.CertificateVerificationError{Err: errors.New(" ")}, "no reason given"},
		{"x509 reason", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`), ": x509: certificate signed by unknown authority; check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CertHint(tc.err, "bank", "--ca or --pin")
			msg := err.Error()
			if !strings.Contains(msg, "did not verify") || !strings.Contains(msg, tc.want) || strings.Contains(msg, ": ;") {
				t.Fatalf("hint %q, want it to say %q", msg, tc.want)
			}
		})
	}
}
