package transport

import (
	"context"
	"net"
	"net/http"
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
	calls  int           // calls in progress
	closed bool          // the connections are being closed: calls are refused
	idle   chan struct{} // closed when calls drops to 0, for Wait; nil: none waits
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
	if !d.begin() {
		return nil, errStopping
	}
	defer d.end()
	return handler(ctx, req)
}

// begin counts a call in progress, unless the stop has decided to close
// the connections.
func (d *Drain) begin() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.calls++
	return true
}

// end counts a call's end.
func (d *Drain) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls--
	d.touch() // under the lock: a stop that sees the call ended sees its answer's quiet begin
	if d.calls == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
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
// it is served. timeout is a hard deadline: writes (a peer that keeps
// sending, and is answered) only postpone the quiet, never past it.
func (d *Drain) Stop(s *grpc.Server, timeout time.Duration) {
	d.stop(s.GracefulStop, s.Stop, timeout)
}

// StopHTTP is Stop for an HTTP server whose connections come from
// d.Listener, whose gRPC calls (grpc.Server.ServeHTTP) are counted by a
// server made with Server{Drain: d} and whose other handlers are wrapped
// in d.Handler. Its handler of a gRPC call is not counted, only the
// call's: net/http holds it until the peer takes the answer, and a peer
// that does not read would hold the stop its timeout, as GracefulStop
// did.
func (d *Drain) StopHTTP(hs *http.Server, timeout time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a Shutdown still waiting, once the connections are closed
	d.stop(func() { hs.Shutdown(ctx) }, func() { hs.Close() }, timeout)
}

func (d *Drain) stop(graceful, force func(), timeout time.Duration) {
	d.touch()
	done := make(chan struct{})
	go func() { graceful(); close(done) }()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		wait, ok := d.closeAfterQuiet()
		if ok {
			force()
			return
		}
		select {
		case <-done:
			return
		case <-deadline.C:
			d.mu.Lock()
			d.closed = true // no handler starts as the daemon closes its store
			d.mu.Unlock()
			force()
			return
		case <-time.After(wait):
		}
	}
}

// Running is the number of calls whose handlers still run: after a
// forced stop, those that have not yet returned.
func (d *Drain) Running() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// Wait waits, up to timeout, for the calls whose handlers still run to
// return (after Stop, forced, they are cut off from their peers and
// their contexts are cancelled), and reports whether none is left. A
// daemon closes its store after it, so that a handler between two of
// its steps does not meet the closed store.
func (d *Drain) Wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		if d.calls == 0 {
			d.mu.Unlock()
			return true
		}
		if d.idle == nil {
			d.idle = make(chan struct{})
		}
		idle := d.idle
		d.mu.Unlock()
		select {
		case <-idle:
		case <-t.C:
			return false
		}
	}
}

// Handler counts h's requests as calls, and refuses them (503) once the
// stop has decided to close the connections.
func (d *Drain) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.begin() {
			http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
			return
		}
		defer d.end()
		h.ServeHTTP(w, r)
	})
}

// Listener tells d of the writes of l's connections.
func (d *Drain) Listener(l net.Listener) net.Listener { return drainListener{l, d} }

type drainListener struct {
	net.Listener
	d *Drain
}

func (l drainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &drainConn{Conn: c, d: l.d}, nil
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
