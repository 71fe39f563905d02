package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// RefusedStreams is the method under which RPCMetrics count the streams a
// server refuses REFUSED_STREAM.
const RefusedStreams = "(connection streams)"

// HTTP/2's RST_STREAM frame and its REFUSED_STREAM code (RFC 9113 §6.4, §7).
const (
	frameRSTStream    = 0x3
	codeRefusedStream = 0x7
)

// serverCreds are a listener's transport credentials (inner; nil:
// plaintext) that watch what the server writes on each connection, once
// past TLS. With m, they count the streams the server refuses
// REFUSED_STREAM: gRPC refuses a stream beyond MaxConcurrentStreams
// (streamsPerConn) before anything of ours sees it (the tap handle, the
// interceptors, a stats handler), and counts it nowhere, so the
// connection is read frame by frame as it is written. With drain, they
// tell it of every write (Drain.Stop).
type serverCreds struct {
	inner credentials.TransportCredentials // nil: plaintext
	m     *RPCMetrics                      // nil: refusals not counted
	drain *Drain                           // nil: writes not told
}

func (c serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info := raw, credentials.AuthInfo(nil)
	if c.inner != nil {
		var err error
		if conn, info, err = c.inner.ServerHandshake(raw); err != nil {
			return nil, nil, err
		}
	}
	if c.m != nil {
		conn = &refusalConn{Conn: conn, m: c.m}
	}
	if c.drain != nil {
		conn = &drainConn{Conn: conn, d: c.drain}
	}
	return conn, info, nil
}

func (c serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("transport: server credentials used to dial")
}

func (c serverCreds) Info() credentials.ProtocolInfo {
	if c.inner == nil {
		return credentials.ProtocolInfo{}
	}
	return c.inner.Info()
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	if c.inner != nil {
		c.inner = c.inner.Clone()
	}
	return c
}

func (c serverCreds) OverrideServerName(string) error { return nil }

// refusalConn reads the HTTP/2 frames written to it (a server writes no
// preface but its frames) for RST_STREAM with REFUSED_STREAM, counting each
// before it is written. It passes payloads over without copying them.
type refusalConn struct {
	net.Conn
	m *RPCMetrics

	mu    sync.Mutex // gRPC writes from one goroutine; this only makes sure
	hdr   [9]byte    // the next frame's header
	nhdr  int        // bytes of hdr written; 9: in the frame's payload
	left  int        // payload bytes of the frame still to pass
	rst   bool       // the frame is an RST_STREAM: its payload is its code
	code  [4]byte
	ncode int
}

func (c *refusalConn) Write(p []byte) (int, error) {
	c.scan(p)
	return c.Conn.Write(p)
}

func (c *refusalConn) scan(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		if c.nhdr < len(c.hdr) {
			n := copy(c.hdr[c.nhdr:], p)
			c.nhdr, p = c.nhdr+n, p[n:]
			if c.nhdr < len(c.hdr) {
				return
			}
			c.left = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
			c.rst, c.ncode = c.hdr[3] == frameRSTStream && c.left == len(c.code), 0
		}
		n := min(c.left, len(p))
		if c.rst {
			c.ncode += copy(c.code[c.ncode:], p[:n])
			if c.ncode == len(c.code) && binary.BigEndian.Uint32(c.code[:]) == codeRefusedStream {
				c.m.refused(RefusedStreams)
			}
		}
		c.left, p = c.left-n, p[n:]
		if c.left == 0 {
			c.nhdr = 0
		}
	}
}
