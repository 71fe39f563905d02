// Package h2frames reads the HTTP/2 frames that cross a server's
// connections, for tests that check what gRPC puts on the wire: the PINGs
// of its bandwidth-delay estimation, and the flow-control windows both
// sides announce. It reads plaintext HTTP/2 only (no TLS).
package h2frames

import (
	"encoding/binary"
	"net"
	"sync"
)

// preface is what a client sends before its first frame.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Counter reads the frames of one direction of the connections it is fed
// (one connection at a time): it counts the PINGs and keeps the windows
// announced, the stream window in SETTINGS and the connection window's
// first increment.
type Counter struct {
	mu         sync.Mutex
	skip       int // bytes of preface still to skip
	buf        []byte
	pings      int
	streamWin  int64 // SETTINGS_INITIAL_WINDOW_SIZE; -1: not announced
	connUpdate int64 // the first WINDOW_UPDATE of stream 0; -1: none
}

func newCounter(skip int) *Counter {
	return &Counter{skip: skip, streamWin: -1, connUpdate: -1}
}

func (f *Counter) add(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = append(f.buf, p...)
	if f.skip > 0 {
		n := min(f.skip, len(f.buf))
		f.buf, f.skip = f.buf[n:], f.skip-n
	}
	for len(f.buf) >= 9 {
		size := 9 + (int(f.buf[0])<<16 | int(f.buf[1])<<8 | int(f.buf[2]))
		if len(f.buf) < size {
			return
		}
		payload := f.buf[9:size]
		stream := binary.BigEndian.Uint32(f.buf[5:9]) &^ (1 << 31)
		switch f.buf[3] {
		case 0x6: // PING
			f.pings++
		case 0x4: // SETTINGS: entries of an id and a value
			for e := payload; len(e) >= 6; e = e[6:] {
				if binary.BigEndian.Uint16(e) == 0x4 { // INITIAL_WINDOW_SIZE
					f.streamWin = int64(binary.BigEndian.Uint32(e[2:]))
				}
			}
		case 0x8: // WINDOW_UPDATE
			if stream == 0 && f.connUpdate < 0 && len(payload) == 4 {
				f.connUpdate = int64(binary.BigEndian.Uint32(payload) &^ (1 << 31))
			}
		}
		f.buf = f.buf[size:]
	}
}

// Pings is the PING frames seen, acks included.
func (f *Counter) Pings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pings
}

// Windows are the stream window and the connection window announced (the
// connection's starts at HTTP/2's 65,535 bytes); -1 if not announced.
func (f *Counter) Windows() (stream, conn int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	conn = -1
	if f.connUpdate >= 0 {
		conn = 65535 + f.connUpdate
	}
	return f.streamWin, conn
}

// Listener passes on the connections of a listener, feeding what their
// clients send to FromClients and what the server sends to FromServer.
// Meant for one connection: the counters read one stream of frames each.
type Listener struct {
	net.Listener
	FromClients, FromServer *Counter
}

// Listen wraps l.
func Listen(l net.Listener) *Listener {
	return &Listener{Listener: l, FromClients: newCounter(len(preface)), FromServer: newCounter(0)}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{c, l}, nil
}

type conn struct {
	net.Conn
	l *Listener
}

func (c conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.FromClients.add(p[:n])
	return n, err
}

func (c conn) Write(p []byte) (int, error) {
	c.l.FromServer.add(p)
	return c.Conn.Write(p)
}
