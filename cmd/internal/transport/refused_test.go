package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	pb "github.com/blindbank/blindbank/proto"
)

// h2Headers is an HTTP/2 HEADERS frame (END_HEADERS, not END_STREAM: the
// call stays open, waiting for its message) of a gRPC call of method on
// stream, each field an HPACK literal without indexing.
func h2Headers(stream uint32, method string) []byte {
	var block []byte
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		block = append(block, 0, byte(len(f[0])))
		block = append(block, f[0]...)
		block = append(block, byte(len(f[1])))
		block = append(block, f[1]...)
	}
	frame := []byte{byte(len(block) >> 16), byte(len(block) >> 8), byte(len(block)), 0x1, 0x4}
	frame = binary.BigEndian.AppendUint32(frame, stream)
	return append(frame, block...)
}

// TestRefusedStreamsCounted: a stream opened beyond a connection's
// MaxConcurrentStreams (here PeerCalls, 2), which a gRPC client never
// opens but any peer may, gRPC refuses REFUSED_STREAM before the tap
// handle or an interceptor sees it; the metrics count it under
// RefusedStreams, over TLS as in plaintext.
func TestRefusedStreamsCounted(t *testing.T) {
	cert, _, _, err := LoadOrCreateCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "TLS"}[withTLS], func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewRPCMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			c := Server{Metrics: m, PeerCalls: 2}
			if withTLS {
				c.Cert = &cert
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := grpc.NewServer(c.Options()...)
			pb.RegisterBankServer(s, &countingBank{})
			go s.Serve(lis)
			t.Cleanup(s.Stop)
			conn, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if withTLS {
				conn = tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}})
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
			out = append(out, 0, 0, 0, 0x4, 0, 0, 0, 0, 0) // SETTINGS, empty
			for _, stream := range []uint32{1, 3, 5} {
				out = append(out, h2Headers(stream, "/blindbank.v1.Bank/PrepareWithdraw")...)
			}
			if _, err := conn.Write(out); err != nil {
				t.Fatal(err)
			}
			// The server's frames, up to its reset of stream 5.
			for {
				var hdr [9]byte
				if _, err := io.ReadFull(conn, hdr[:]); err != nil {
					t.Fatalf("reading the server's frames: %v; stream 5 not reset", err)
				}
				payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
				if _, err := io.ReadFull(conn, payload); err != nil {
					t.Fatal(err)
				}
				if hdr[3] != frameRSTStream {
					continue
				}
				stream := binary.BigEndian.Uint32(hdr[5:]) &^ (1 << 31)
				if stream != 5 || len(payload) != 4 || binary.BigEndian.Uint32(payload) != codeRefusedStream {
					t.Fatalf("stream %d reset with %x; want stream 5 refused", stream, payload)
				}
				break
			}
			if n := refusals(t, reg, RefusedStreams); n != 1 {
				t.Errorf("%g refused streams counted, want 1", n)
			}
		})
	}
}

// discardConn takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// TestRefusalConnSplitWrites: refusalConn finds the REFUSED_STREAM resets,
// and only those, in frames written in pieces of any size.
func TestRefusalConnSplitWrites(t *testing.T) {
	frame := func(typ byte, stream uint32, payload []byte) []byte {
		f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, 0}
		f = binary.BigEndian.AppendUint32(f, stream)
		return append(f, payload...)
	}
	code := func(c uint32) []byte { return binary.BigEndian.AppendUint32(nil, c) }
	var wire []byte
	for _, f := range [][]byte{
		frame(0x4, 0, []byte{0, 3, 0, 0, 0, 2}), // SETTINGS
		frame(frameRSTStream, 1, code(codeRefusedStream)),
		frame(0x0, 3, make([]byte, 300)), // DATA holding what looks like a reset
		frame(0x0, 3, frame(frameRSTStream, 5, code(codeRefusedStream))),
		frame(frameRSTStream, 5, code(0x8)), // CANCEL
		frame(0x6, 0, make([]byte, 8)),      // PING
		frame(frameRSTStream, 7, code(codeRefusedStream)),
	} {
		wire = append(wire, f...)
	}
	for size := 1; size <= len(wire); size++ {
		reg := prometheus.NewRegistry()
		m, err := NewRPCMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		c := &refusalConn{Conn: discardConn{}, m: m}
		for p := wire; len(p) > 0; {
			n := min(size, len(p))
			c.Write(p[:n])
			p = p[n:]
		}
		if n := refusals(t, reg, RefusedStreams); n != 2 {
			t.Fatalf("written %d bytes at a time: %g refused streams counted, want 2", size, n)
		}
	}
}
