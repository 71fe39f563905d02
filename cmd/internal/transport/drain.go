package transport

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// DrainQuiet is how long a stop (Drain.Stop), once no unary call is in
// progress, waits for the server's connections to write nothing more
// before it closes those left.
const DrainQuiet = time.Second

// Drain is what a server's stop waits for: its unary calls in progress,
// then the writing of their answers. A server made with Server{Drain: d}
// is stopped with d.Stop.
//
// GracefulStop waits for every connection to close, which a connection
// does once its calls' answers are written and its peer has answered the
// GOAWAY. A peer that stops reading (its flow-control window or its
// socket's buffer full) takes neither, and held a stop until it was
// forced, its full timeout. Stop closes the connections left once no call
// is in progress (what a handler commits is durable before it returns:
// closing cuts off answers, never commits) and nothing has been written
// for DrainQuiet: every answer is then with the kernel or held by a peer
// that does not read. The cost: a peer that reads so slowly that a write
// to it (gRPC writes up to 32 KiB at a time) takes longer than DrainQuiet
// loses its answers (Unavailable: the connection closed), and its retry
// finds what its call committed. A peer still being written to holds the
// stop up to the timeout, as before.
type Drain struct {
	quiet time.Duration
	start time.Time
	last  atomic.Int64 // since start: a call last ended or a connection last wrote

	mu     sync.Mutex
	calls  int  // unary calls in progress
	closed bool // the connections are being closed: calls are refused
}

// NewDrain returns a Drain with nothing in progress.
func NewDrain() *Drain {
	return &Drain{quiet: DrainQuiet, start: time.Now()}
}

func (d *Drain) touch() { d.last.Store(int64(time.Since(d.start))) }

// unary counts the calls in progress; it runs last of the interceptors,
// so that it counts only calls whose handlers run, and a call it refuses
// is logged and counted as any other. It refuses a call once the stop has
// decided to close the connections: Stop does not wait for handlers, and
// one would run as the daemon closes its store.
func (d *Drain) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errStopping
	}
	d.calls++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.calls--
		d.touch() // under the lock: a stop that sees the call ended sees its answer's quiet begin
		d.mu.Unlock()
	}()
	return handler(ctx, req)
}

// closeAfterQuiet reports whether no call is in progress and nothing was
// written for d.quiet, and if so refuses the calls that come after;
// otherwise, how long to wait before asking again.
func (d *Drain) closeAfterQuiet() (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls > 0 {
		return d.quiet, false
	}
	if wait := d.quiet - (time.Since(d.start) - time.Duration(d.last.Load())); wait > 0 {
		return wait, false
	}
	d.closed = true
	return 0, true
}

// Stop stops s, made with Server{Drain: d}: it stops taking connections
// and calls, lets the calls in progress finish and their answers be
// written, and closes the connections still open once none is in
// progress and nothing has been written for DrainQuiet (see Drain), or
// else after timeout. Calls still in progress after timeout are cut off,
// and the calls that come after are refused, forced or not.
// The quiet counts from the stop's start, so that peers that read have
// their idle connections closed by GOAWAY, and a call they sent before
// it is served.
func (d *Drain) Stop(s *grpc.Server, timeout time.Duration) {
	d.touch()
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	force := time.NewTimer(timeout)
	defer force.Stop()
	for {
		wait, ok := d.closeAfterQuiet()
		if ok {
			s.Stop()
			return
		}
		select {
		case <-done:
			return
		case <-force.C:
			d.mu.Lock()
			d.closed = true // no handler starts as the daemon closes its store
			d.mu.Unlock()
			s.Stop()
			return
		case <-time.After(wait):
		}
	}
}

// drainConn tells its Drain of its writes.
type drainConn struct {
	net.Conn
	d *Drain
}

func (c *drainConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.d.touch()
	}
	return n, err
}
