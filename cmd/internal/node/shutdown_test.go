package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TestShutdownEndsStreams: GracefulStop waits for every call, and a
// health Watch (which the shutdown turns NOT_SERVING but did not end) or
// a reflection stream lasts as long as its client likes: one watching
// peer made every shutdown wait its full 10 seconds and then be forced.
// The shutdown now ends the streams first, Unavailable, on both
// listeners, and the daemon drains at once.
func TestShutdownEndsStreams(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := dialPlain(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	type stream interface{ RecvMsg(any) error }
	streams := map[string]stream{}
	for name, c := range map[string]healthpb.HealthClient{"public Watch": healthpb.NewHealthClient(conn), "admin Watch": healthpb.NewHealthClient(admin)} {
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		streams[name] = w
	}
	r, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(); err != nil {
		t.Fatal(err)
	}
	streams["reflection"] = r

	start := time.Now()
	b.Close()
	t.Logf("Close with two health Watches and a reflection stream open took %v", time.Since(start))
	for name, s := range streams {
		var err error
		for err == nil { // a Watch may first be told NOT_SERVING
			if name == "reflection" {
				if err = s.RecvMsg(new(reflectionpb.ServerReflectionResponse)); err == nil {
					t.Fatalf("reflection answered after the shutdown")
				}
			} else {
				err = s.RecvMsg(new(healthpb.HealthCheckResponse))
			}
		}
		// Forced (after 10 seconds), the stream ends with its connection.
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("%s at shutdown: %v; want Unavailable, the server shutting down", name, err)
		}
	}
}
