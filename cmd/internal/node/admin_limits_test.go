package node

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TestAdminTokenBeforeMessage: the admin listener checks the token of a
// gRPC call before gRPC reads its message. It was checked only by an
// interceptor, once gRPC had received and decoded the whole message (up
// to 4 MiB), so any local user without the token could start calls
// whose messages it never finished and have the daemon hold all it sent
// of each. Each call is now answered
// Unauthenticated as it opens, and the bank holds nothing of it. The
// listener also tells clients its bounds: AdminMaxStreams streams a
// connection and a header list of transport.MaxHeaderListSize (net/http's
// defaults: 250 and 1 MiB). Streams need the token too: a health Watch
// without it was answered.
func TestAdminTokenBeforeMessage(t *testing.T) {
	const calls = 100
	const sent = 1<<20 - 16<<10 // of each call's message of 4 MiB
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	c := dialH2(t, b.AdminAddr)
	c.ping()
	c.mu.Lock()
	streams, headers := c.settings[0x3], c.settings[0x6] // MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE
	c.mu.Unlock()
	c.close()
	if streams == 0 || streams > AdminMaxStreams {
		t.Errorf("the admin listener allows %d streams a connection; want at most %d", streams, AdminMaxStreams)
	}
	if headers == 0 || headers > 2*transport.MaxHeaderListSize {
		t.Errorf("the admin listener takes header lists of %d bytes; want about %d", headers, transport.MaxHeaderListSize)
	}

	// Two connections (each may have AdminMaxStreams streams), each
	// call's message begun and never finished, within a stream's window.
	var before runtime.MemStats
	heap(&before)
	c1, c2 := dialH2(t, b.AdminAddr), dialH2(t, b.AdminAddr)
	defer c1.close()
	defer c2.close()
	ids := map[*h2conn][]uint32{}
	for i := range calls {
		c := []*h2conn{c1, c2}[i%2]
		c.mu.Lock()
		id := c.start(b.AdminAddr, "/blindbank.v1.BankAdmin/Credit")
		c.mu.Unlock()
		c.send(id, sent)
		ids[c] = append(ids[c], id)
	}
	for c, ids := range ids {
		c.ping() // the bank has taken in everything sent before
		for _, id := range ids {
			if !c.ended(id) {
				t.Errorf("admin call on stream %d without the token, its message begun: not refused", id)
			}
		}
	}
	var after runtime.MemStats
	heap(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d admin calls without the token, %d KiB sent of each: the bank's heap grew by %d KiB", calls, sent>>10, grown>>10)
	if grown > 16<<20 {
		t.Errorf("a peer without the admin token holds %d MiB of the bank's heap", grown>>20)
	}

	// A stream without the token is refused; with it, served.
	adm, err := transport.Dial(b.AdminAddr, transport.ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(adm).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("admin health Watch without the token: %v, %v; want Unauthenticated", r.GetStatus(), err)
	}
	tok, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if _, err := healthpb.NewHealthClient(tok).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("admin health Check with the token: %v", err)
	}
}
