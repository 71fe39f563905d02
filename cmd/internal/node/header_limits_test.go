package node

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	pb "github.com/blindbank/blindbank/proto"
)

// hpackInt appends n as an HPACK integer with a prefix of bits bits
// (RFC 7541, section 5.1); the first byte's high bits are 0.
func hpackInt(b []byte, bits uint, n int) []byte {
	max := 1<<bits - 1
	if n < max {
		return append(b, byte(n))
	}
	b = append(b, byte(max))
	n -= max
	for n >= 128 {
		b = append(b, byte(n%128+128))
		n /= 128
	}
	return append(b, byte(n))
}

// paddedHeaderBlock is the HPACK block of a call of method with one
// extra header "x-pad" of pad bytes (literal fields without indexing).
func paddedHeaderBlock(authority, method string, pad int) []byte {
	var block []byte
	value := make([]byte, pad)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", authority}, {"content-type", "application/grpc"}, {"te", "trailers"}, {"x-pad", string(value)}} {
		block = append(block, 0)
		block = hpackInt(block, 7, len(f[0]))
		block = append(block, f[0]...)
		block = hpackInt(block, 7, len(f[1]))
		block = append(block, f[1]...)
	}
	return block
}

// sendHeaderBlock sends block on a new stream as HEADERS and
// CONTINUATIONs; with finish false the last CONTINUATION (the one with
// END_HEADERS) is never sent. Write errors are ignored: the server may
// close the connection part way.
func (h *h2conn) sendHeaderBlock(block []byte, finish bool) uint32 {
	h.mu.Lock()
	id := h.nextID
	h.nextID += 2
	h.mu.Unlock()
	const frame = 1 << 14
	typ := byte(frHeaders)
	for len(block) > 0 {
		n := min(frame, len(block))
		if n == len(block) && !finish {
			return id
		}
		var flags byte
		if n == len(block) {
			flags = flagEndHeaders
		}
		h.mu.Lock()
		err := h.writeQuiet(typ, flags, id, block[:n])
		h.mu.Unlock()
		if err != nil {
			return id
		}
		block = block[n:]
		typ = 0x9 // CONTINUATION
	}
	return id
}

// writeQuiet is write for a connection the server may have closed: it
// returns the error rather than failing the test. The caller holds mu.
func (h *h2conn) writeQuiet(typ, flags byte, stream uint32, payload []byte) error {
	f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	f = binary.BigEndian.AppendUint32(f, stream)
	_, err := h.c.Write(append(f, payload...))
	return err
}

// waitClosed waits, for at most d, for the server to close the
// connection, and reports whether it did.
func (h *h2conn) waitClosed(d time.Duration) bool {
	stop := time.AfterFunc(d, func() { h.mu.Lock(); h.cond.Broadcast(); h.mu.Unlock() })
	defer stop.Stop()
	deadline := time.Now().Add(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	for !h.done && time.Now().Before(deadline) {
		h.cond.Wait()
	}
	return h.done
}

// pingOrClosed sends a PING and waits for its acknowledgement (the server
// has taken in everything sent before) or for the server to close the
// connection; it reports whether the connection is still open.
func (h *h2conn) pingOrClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pings++
	data := h.pings
	h.writeQuiet(frPing, 0, 0, binary.BigEndian.AppendUint64(nil, data))
	for !h.acks[data] && !h.done {
		h.cond.Wait()
	}
	return !h.done
}

// TestHeaderListBounded: a call's header list is bounded by
// transport.MaxHeaderListSize, not gRPC's default of 16 MiB. Headers are
// not flow-controlled and a call's metadata stays in its context until it
// ends, so without the bound a peer sending only HEADERS of some 15 MiB
// and never a message held twice OPERATIONS' documented bound per call
// (transport.MaxCallBytes). Honest metadata (here 8 KiB, far more than
// any client of ours sends) still passes.
func TestHeaderListBounded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	conn, err := dialPlain(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-pad", strings.Repeat("a", 8<<10))
	if _, err := pb.NewBankClient(conn).GetKeys(ctx, &pb.GetKeysRequest{}); err != nil {
		t.Fatalf("a call with 8 KiB of metadata: %v", err)
	}

	var before runtime.MemStats
	heap(&before)
	c := dialH2(t, b.Addr)
	defer c.close()
	id := c.sendHeaderBlock(paddedHeaderBlock(b.Addr, "/blindbank.v1.Bank/Withdraw", 15<<20), true)
	if c.pingOrClosed() && !c.ended(id) {
		t.Errorf("a call with 15 MiB of headers was taken (the stream is open and the connection too)")
	}
	var after runtime.MemStats
	heap(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > transport.MaxCallBytes {
		t.Errorf("one call with 15 MiB of headers and no message: the bank's heap grew by %d MiB; a call may hold %d MiB", grown>>20, transport.MaxCallBytes>>20)
	}
}

// TestUnfinishedHeaderBlocksBounded: a header block that is never
// finished (HEADERS, then CONTINUATIONs without END_HEADERS) opens no
// stream, so no per-peer cap counts it, yet gRPC buffered it up to its
// default header list size of 16 MiB, for as long as the peer kept the
// connection. Bounded by transport.MaxHeaderListSize, a block that goes
// far beyond it closes the connection and nothing of it is kept.
func TestUnfinishedHeaderBlocksBounded(t *testing.T) {
	const conns = 4
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true,
		Limits: RateLimits{ConnsPerPeer: conns}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	block := paddedHeaderBlock(b.Addr, "/blindbank.v1.Bank/GetKeys", 15<<20)

	var before runtime.MemStats
	heap(&before)
	var cs []*h2conn
	for range conns {
		c := dialH2(t, b.Addr)
		defer c.close()
		// Without the bound the server reads the whole block: the writes
		// return once it has taken in all but what the sockets buffer.
		c.sendHeaderBlock(block, false)
		cs = append(cs, c)
	}
	var after runtime.MemStats
	heap(&after)
	runtime.KeepAlive(block) // counted in before: not to be freed before after
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d connections, each an unfinished 15 MiB header block: the bank's heap grew by %d KiB", conns, grown>>10)
	if grown > conns<<20 {
		t.Errorf("%d connections with no call in progress hold %d MiB of the bank's heap", conns, grown>>20)
	}
	deadline := time.Now().Add(30 * time.Second) // the bank closes them at once
	for i, c := range cs {
		if !c.waitClosed(time.Until(deadline)) {
			t.Errorf("connection %d: an unfinished header block of 15 MiB left the connection open", i)
		}
	}
}
