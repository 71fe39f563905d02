package node

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TestPeerMemoryBounded: one peer address starts calls whose messages it
// sends only in part and never finishes, trying for three times what the
// caps let it hold. Calls beyond its calls-in-progress cap are refused as
// their streams open: on one connection by the streams it may have open,
// which the bank tells the peer is no more than the cap (REFUSED_STREAM,
// a stream gRPC never started), on any other by the cap itself
// (ResourceExhausted); connections beyond its
// connection cap are closed as they are accepted; and the bank's heap
// grows by at most the caps' worth (calls × transport.MaxCallBytes). When
// the peer goes, its places come back. Without the caps the bank held
// all it was sent, for as long as the peer kept its connection open.
func TestPeerMemoryBounded(t *testing.T) {
	const calls, conns = 4, 2 // the caps under test
	const sent = 1 << 20      // of each call's 4 MiB message
	bound := int64(calls) * transport.MaxCallBytes
	attempts := int(3 * bound / sent)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true,
		Limits: RateLimits{CallsPerPeer: calls, ConnsPerPeer: conns}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var before runtime.MemStats
	heap(&before)

	c1, c2 := dialH2(t, b.Addr), dialH2(t, b.Addr)
	defer c1.close()
	defer c2.close()
	if c3 := dialH2(t, b.Addr); c3.settled {
		c3.close()
		t.Errorf("connection %d of one address accepted; want at most %d", conns+1, conns)
	}

	ids := make([]uint32, attempts)
	for i := range ids {
		ids[i] = c1.open(b.Addr)
	}
	c1.ping()
	var held []uint32
	for _, id := range ids {
		if !c1.ended(id) {
			held = append(held, id)
		}
	}
	if len(held) != calls {
		t.Errorf("%d of %d calls on one connection admitted; want %d", len(held), attempts, calls)
	}
	for _, id := range ids[len(held):] {
		if !c1.refusedStream(id) {
			t.Errorf("call on stream %d refused otherwise than as beyond the connection's streams", id)
			break
		}
	}
	if !c2.refused(c2.open(b.Addr)) {
		t.Errorf("a call on the address's second connection admitted beyond its %d", calls)
	}
	for _, id := range held {
		c1.send(id, sent)
	}
	c1.ping() // the bank has read every byte sent before it

	var after runtime.MemStats
	heap(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("one address, %d calls of %d KiB each tried, %d held: the bank's heap grew by %d KiB", attempts, sent>>10, len(held), grown>>10)
	if grown > bound {
		t.Errorf("one address holds %d MiB of the bank's memory; want at most %d calls × %d MiB", grown>>20, calls, transport.MaxCallBytes>>20)
	}
	refusals := map[string]float64{"(peer calls)": 1, "(peer connections)": 1} // the second connection's call
	mfs, err := b.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != transport.RPCCallsMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			var method, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					method = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			if want, ok := refusals[method]; ok && code == "ResourceExhausted" {
				if got := m.GetCounter().GetValue(); got != want {
					t.Errorf("%s refused %v times, want %v", method, got, want)
				}
				delete(refusals, method)
			}
		}
	}
	if len(refusals) > 0 {
		t.Errorf("not counted as refused: %v", refusals)
	}

	// The places come back when the peer goes: closed, its connections and
	// calls are given back as the bank notices (by goroutines of their own,
	// so a fresh connection may come just before and be refused).
	c1.close()
	c2.close()
	for {
		c := dialH2(t, b.Addr)
		if c.settled {
			ids := make([]uint32, calls+1)
			for i := range ids {
				ids[i] = c.open(b.Addr)
			}
			c.ping()
			admitted := 0
			for _, id := range ids {
				if !c.ended(id) {
					admitted++
				}
			}
			c.close()
			if admitted == calls {
				break
			}
			if admitted > calls {
				t.Fatalf("%d calls admitted at once after the peer came back; want %d", admitted, calls)
			}
		}
		time.Sleep(10 * time.Millisecond) // not to spend the address's rate
	}
}

// heap reads the memory statistics after two collections: the second
// frees what pools (gRPC's buffers) kept through the first.
func heap(m *runtime.MemStats) {
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(m)
}

// h2conn is a raw HTTP/2 client connection, as a peer that does not follow
// gRPC's client would use one: frames written by hand, the server's read
// by a goroutine that keeps what the test waits for.
type h2conn struct {
	t       *testing.T
	c       net.Conn
	settled bool // the server's SETTINGS arrived: the connection was accepted

	mu       sync.Mutex // writes, and the fields below
	cond     *sync.Cond
	connWin  int64
	ended_   map[uint32]bool // streams the server ended (HEADERS with END_STREAM, or RST_STREAM)
	answered map[uint32]bool // streams the server answered (HEADERS without END_STREAM)
	reset    map[uint32]bool // streams the server refused with REFUSED_STREAM
	acks     map[uint64]bool
	settings map[uint16]uint32 // the server's SETTINGS
	nextID   uint32
	pings    uint64
	done     bool
}

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	frData, frHeaders, frRSTStream, frSettings, frPing, frWindowUpdate = 0x0, 0x1, 0x3, 0x4, 0x6, 0x8
	flagEndStream, flagAck, flagEndHeaders                             = 0x1, 0x1, 0x4
	errRefusedStream                                                   = 0x7
)

// dialH2 connects, sends the preface and waits for the server's SETTINGS,
// or for the server to close the connection (settled false).
func dialH2(t *testing.T, addr string) *h2conn { t.Helper(); return dialH2Settings(t, addr, nil) }

// dialH2Settings is dialH2 sending settings (6 bytes each: RFC 9113,
// section 6.5.1) in its SETTINGS frame.
func dialH2Settings(t *testing.T, addr string, settings []byte) *h2conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &h2conn{t: t, c: c, connWin: 65535, ended_: map[uint32]bool{}, answered: map[uint32]bool{}, reset: map[uint32]bool{}, acks: map[uint64]bool{}, settings: map[uint16]uint32{}, nextID: 1}
	h.cond = sync.NewCond(&h.mu)
	h.mu.Lock()
	defer h.mu.Unlock()
	c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")) // a refused connection fails here or in read
	h.write(frSettings, 0, 0, settings)
	// Only now: the server sends its SETTINGS as it accepts, and their
	// acknowledgement must not go out before the preface.
	go h.read()
	for !h.settled && !h.done {
		h.cond.Wait()
	}
	return h
}

func (h *h2conn) close() { h.c.Close() }

// write sends one frame; the caller holds mu.
func (h *h2conn) write(typ, flags byte, stream uint32, payload []byte) {
	f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	f = binary.BigEndian.AppendUint32(f, stream)
	if _, err := h.c.Write(append(f, payload...)); err != nil && h.settled {
		h.t.Errorf("writing a frame: %v", err)
	}
}

// read keeps the server's SETTINGS (acknowledged), the connection's window,
// the streams it answers and ends and the PINGs it acknowledges; it
// acknowledges the server's PINGs, as a live client would.
func (h *h2conn) read() {
	defer func() {
		h.mu.Lock()
		h.done = true
		h.cond.Broadcast()
		h.mu.Unlock()
	}()
	var hdr [9]byte
	buf := make([]byte, 1<<14)
	for {
		if _, err := io.ReadFull(h.c, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&(1<<31-1)
		if n > len(buf) {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(h.c, p); err != nil {
			return
		}
		h.mu.Lock()
		switch {
		case typ == frSettings && flags&flagAck == 0:
			for s := p; len(s) >= 6; s = s[6:] {
				h.settings[binary.BigEndian.Uint16(s)] = binary.BigEndian.Uint32(s[2:])
			}
			h.write(frSettings, flagAck, 0, nil)
			h.settled = true
		case typ == frWindowUpdate && stream == 0:
			h.connWin += int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
		case typ == frHeaders && flags&flagEndStream != 0:
			h.ended_[stream] = true
		case typ == frHeaders:
			h.answered[stream] = true
		case typ == frRSTStream:
			h.ended_[stream] = true
			h.reset[stream] = binary.BigEndian.Uint32(p) == errRefusedStream
		case typ == frPing && flags&flagAck != 0:
			h.acks[binary.BigEndian.Uint64(p)] = true
		case typ == frPing:
			h.write(frPing, flagAck, 0, p)
		}
		h.cond.Broadcast()
		h.mu.Unlock()
	}
}

// open starts a Withdraw call whose message, just under the largest the
// bank takes, it has yet to send.
func (h *h2conn) open(authority string) uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.start(authority, "/blindbank.v1.Bank/Withdraw")
}

// getKeys makes a whole GetKeys call (its message is empty) and waits
// for the server to answer it or end it.
func (h *h2conn) getKeys(authority string) uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.start(authority, "/blindbank.v1.Bank/GetKeys")
	h.write(frData, flagEndStream, id, make([]byte, 5))
	for !h.answered[id] && !h.ended_[id] && !h.done {
		h.cond.Wait()
	}
	return id
}

// start sends the HEADERS of a call of method, with the extra fields,
// on a new stream; the caller holds mu.
func (h *h2conn) start(authority, method string, extra ...[2]string) uint32 {
	id := h.nextID
	h.nextID += 2
	var block []byte
	for _, f := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", authority}, {"content-type", "application/grpc"}, {"te", "trailers"}}, extra...) {
		// A literal field without indexing, its name and value plain
		// (RFC 7541, section 6.2.2); all are shorter than 127 bytes.
		block = append(block, 0, byte(len(f[0])))
		block = append(block, f[0]...)
		block = append(block, byte(len(f[1])))
		block = append(block, f[1]...)
	}
	h.write(frHeaders, flagEndHeaders, id, block)
	return id
}

// send sends the message's 5-byte prefix and n bytes of it on stream id,
// within the connection's window (a stream's, 4 MiB, takes it all).
func (h *h2conn) send(id uint32, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prefix := binary.BigEndian.AppendUint32([]byte{0}, transport.MaxMessageSize-16)
	chunk := make([]byte, 1<<14)
	for _, p := range append([][]byte{prefix}, make([][]byte, n/len(chunk))...) {
		if p == nil {
			p = chunk
		}
		for h.connWin < int64(len(p)) && !h.done {
			h.cond.Wait()
		}
		h.write(frData, 0, id, p)
		h.connWin -= int64(len(p))
	}
}

// ping waits for the server's acknowledgement of a PING: gRPC reads a
// connection's frames in order and answers them in order, so by then it
// has taken in everything sent before, and what it answered to that
// (a refused call's end) has arrived.
func (h *h2conn) ping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pings++
	data := h.pings
	h.write(frPing, 0, 0, binary.BigEndian.AppendUint64(nil, data))
	for !h.acks[data] {
		if h.done {
			h.t.Fatal("the server closed the connection")
		}
		h.cond.Wait()
	}
}

// refused reports whether the server ended stream id as soon as it
// opened (after a PING's round trip).
func (h *h2conn) refused(id uint32) bool {
	h.ping()
	return h.ended(id)
}

// refusedStream reports whether the server refused stream id with
// REFUSED_STREAM.
func (h *h2conn) refusedStream(id uint32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reset[id]
}

// ended reports whether the server ended stream id.
func (h *h2conn) ended(id uint32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended_[id]
}
