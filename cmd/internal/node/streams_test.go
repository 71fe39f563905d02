package node

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
)

// TestReflectionChargedPerMessage: the public listener's reflection
// service is one stream of any number of requests, and the per-peer rate
// charged the stream once: at 5 calls a second, one stream answered 2000
// requests in half a second. Each request after the first now costs a
// call, and the stream ends ResourceExhausted once the rate is spent.
func TestReflectionChargedPerMessage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true,
		Limits: RateLimits{PerPeer: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := dialPlain(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// At 5 a second, 2000 requests would take 400 seconds.
	answered := 0
	for range 2000 {
		if err = st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "blindbank.v1.Bank"}}); err != nil {
			break
		}
		if _, err = st.Recv(); err != nil {
			break
		}
		answered++
	}
	if err == io.EOF { // the stream ended: its status is Recv's
		_, err = st.Recv()
	}
	t.Logf("one reflection stream at a per-peer rate of 5 a second: %d requests answered, then %v", answered, err)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("one reflection stream at a per-peer rate of 5 a second: %d requests answered, then %v; want ResourceExhausted", answered, err)
	}
}
