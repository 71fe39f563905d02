package transport

import (
	"net"
	"sync"
	"time"
)

// PeerCounter counts what each peer address (an IPv6 peer: its /64) holds
// open at once, refusing beyond a maximum. The rate limit bounds how fast
// a peer opens calls and connections, not how many it keeps open, and an
// open call holds the part of its message sent so far.
type PeerCounter struct {
	max int
	mu  sync.Mutex
	n   map[string]int // only peers holding something: a peer's entry goes at 0
}

// NewPeerCounter admits up to max at once per peer address.
func NewPeerCounter(max int) *PeerCounter {
	return &PeerCounter{max: max, n: make(map[string]int)}
}

func (c *PeerCounter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

func (c *PeerCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}

// LimitConns closes, as it accepts them, a peer address's connections
// beyond max open at once (counted under "(peer connections)" in m), so
// that one address cannot hold more than max connections' buffers and
// calls however slowly it opens them.
func LimitConns(l net.Listener, max int, m *RPCMetrics) net.Listener {
	return &connLimiter{Listener: l, open: NewPeerCounter(max), metrics: m}
}

type connLimiter struct {
	net.Listener
	open    *PeerCounter
	metrics *RPCMetrics
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(c.RemoteAddr())
		if !l.open.acquire(key) {
			l.metrics.refused("(peer connections)")
			c.Close()
			continue
		}
		// gRPC sets TCP_USER_TIMEOUT only on a *net.TCPConn, which the
		// wrapper hides from it.
		setUserTimeout(c, KeepaliveTimeout)
		return &countedConn{Conn: c, open: l.open, key: key}, nil
	}
}

// countedConn gives its peer's place back when closed.
type countedConn struct {
	net.Conn
	open *PeerCounter
	key  string
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.open.release(c.key) })
	return err
}

// KeepaliveTimeout is how long a server waits for a keepalive PING's ack,
// and how long its sent data may go unacknowledged by TCP (TCP_USER_TIMEOUT)
// before it drops the connection: gRPC's default.
const KeepaliveTimeout = 20 * time.Second
