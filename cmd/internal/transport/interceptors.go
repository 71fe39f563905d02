package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/blindbank/blindbank/bank"
	pb "github.com/blindbank/blindbank/proto"
)

// RequestIDKey is the metadata key that carries a request id from wallet to
// merchant to bank, so one payment can be followed through every log.
const RequestIDKey = "x-request-id"

// RequestID returns the request id of an incoming call's context.
func RequestID(ctx context.Context) string { return bank.RequestID(ctx) }

// DefaultCallTimeout bounds every outbound call that has no deadline of its
// own, so a silent peer cannot hold a caller forever.
const DefaultCallTimeout = 30 * time.Second

// serverInterceptors (1) take the caller's request id, or make one, and
// give the handler its peer's address key as the call's source
// (bank.WithSource: the bank counts failed authentications per source),
// (2) turn a panic in a handler into Internal without detail for the
// peer, logging the stack, and (3) log each call's method, code and
// duration at Debug.
func serverInterceptors(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, id := callContext(ctx)
		ctx = metadata.AppendToOutgoingContext(ctx, RequestIDKey, id)
		defer endCall(ctx, log, info.FullMethod, id, time.Now(), &err)
		return handler(ctx, req)
	}
}

// clientInterceptor passes the request id on and applies the default
// timeout to calls without a deadline.
func clientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// tapPeers refuses, with ResourceExhausted as their streams open and
// before gRPC reads any of their messages, calls beyond a peer address's
// rate (l; nil: none) and beyond the calls it may have in progress at once
// (calls; nil: none): a refused call costs the server next to nothing.
// A call holds its place until its handler has returned (releasePeerCall),
// or else until its stream's context ends, which gRPC does however the
// stream ends (answered, reset, deadline, connection closed). The metrics
// count refusals under the methods "(peer rate)" and "(peer calls)".
func tapPeers(l *bank.RateLimiter, calls *PeerCounter, m *RPCMetrics) tap.ServerInHandle {
	return func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		key := peerKey(ctx)
		if l != nil && !l.Allow(key, time.Now()) {
			m.refused("(peer rate)")
			return nil, errTooFast
		}
		if calls != nil {
			if !calls.acquire(key) {
				m.refused("(peer calls)")
				return nil, errTooMany
			}
			release := sync.OnceFunc(func() { calls.release(key) })
			context.AfterFunc(ctx, release)
			ctx = context.WithValue(ctx, peerCallKey{}, release)
		}
		return bank.WithSource(ctx, key), nil // the call's source: serverInterceptors need not work it out again
	}
}

type peerCallKey struct{}

// releasePeerCall gives a call's place (tapPeers) back as its handler
// returns, before gRPC sends its answer: the context ends only after
// the answer is queued, and the place would come back by a goroutine of
// its own, sometimes after the peer, seeing the answer, has started its
// next call, which a peer using all its places would have refused.
func releasePeerCall(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if release, ok := ctx.Value(peerCallKey{}).(func()); ok {
		defer release()
	}
	return handler(ctx, req)
}

// chargePeers takes from a peer's rate what a call costs beyond the one
// token its stream took (callCost), once its message is decoded. A call
// costing more than the burst takes all of it: it waits for a full bucket
// and empties it, rather than never passing.
func chargePeers(l *bank.RateLimiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if n := min(callCost(req), l.Burst()-1); n > 0 && !l.AllowN(peerKey(ctx), time.Now(), n) {
			return nil, errTooFast
		}
		return handler(ctx, req)
	}
}

var (
	errTooFast = bank.NewStatus(codes.ResourceExhausted, "ADDRESS_RATE_LIMITED", "too many requests from this address; slow down").Err()
	errTooMany = bank.NewStatus(codes.ResourceExhausted, "ADDRESS_CALLS_LIMITED", "too many calls in progress from this address; wait for some to finish").Err()
)

// callCost is what a call costs in the per-peer rate's tokens beyond the
// first: a first-round (PrepareWithdraw) call one more per 16 items, so a
// call of 1024, 36 ms of a bank's CPU, costs 65, and one address keeps at
// most some 0.3 of a core busy at the default 500 a second, not 18 cores.
// (A call's fixed cost is some 150 µs; an item's, two scalar
// multiplications, 35 µs: a quarter, but a wallet's restore asks 1024 at a
// time, and at a quarter would wait half a second a call.)
func callCost(req any) int {
	if r, ok := req.(*pb.PrepareWithdrawRequest); ok {
		return len(r.Items) / 16
	}
	return 0
}

// peerKey is the address a call comes from (addrKey).
func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	return addrKey(p.Addr)
}

// addrKey is a peer's address without its port; for IPv6 its /64
// network, which one host is commonly given whole (limited per address, it
// would have 2^64 fresh buckets).
func addrKey(a net.Addr) string {
	key := a.String()
	if host, _, err := net.SplitHostPort(key); err == nil {
		key = host
	}
	// A link-local peer's fe80::1%eth0 does not parse with its zone, and
	// each of its addresses would be a key of its own; without the zone
	// every link's peers would share fe80::/64. So: the /64, then the zone.
	zone := ""
	if i := strings.IndexByte(key, '%'); i >= 0 {
		key, zone = key[:i], key[i:]
	}
	if ip := net.ParseIP(key); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64" + zone
	}
	return key + zone
}

// Streaming calls (the health service's Watch, gRPC reflection) pass
// through interceptors of their own: the unary ones never see them.

// contextStream is a server stream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// serverStreamInterceptor is serverInterceptors for streams: the request
// id and the call's source, and the call logged at Debug as it ends. A
// panic is recovered by recoverStreams, in the handler's goroutine
// (endStreams).
func serverStreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx, id := callContext(ss.Context())
		defer logCall(ctx, log, info.FullMethod, id, time.Now(), &err)
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// recoverStreams answers a panic in a stream's handler Internal without
// detail for the peer, logging the stack.
func recoverStreams(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = panicked(log, info.FullMethod, RequestID(ss.Context()), p)
			}
		}()
		return handler(srv, ss)
	}
}

// RequireTokenStream is RequireToken for streaming calls.
func RequireTokenStream(token string) grpc.StreamServerInterceptor {
	want := []byte("Bearer " + token)
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := checkToken(ss.Context(), want); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// chargeStreamMessages charges a peer's rate one call for every message
// of a stream after its first (the stream's opening took a token, as a
// unary call's does): a stream of requests (reflection's) is then bounded
// as the same requests in calls of their own would be. A message beyond
// the rate ends the stream with ResourceExhausted, unanswered.
func chargeStreamMessages(l *bank.RateLimiter) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &chargedStream{ServerStream: ss, limit: l, key: peerKey(ss.Context())})
	}
}

type chargedStream struct {
	grpc.ServerStream
	limit    *bank.RateLimiter
	key      string
	received bool
}

func (s *chargedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.received && !s.limit.Allow(s.key, time.Now()) {
		return errTooFast
	}
	s.received = true
	return nil
}

// endStreams ends a streaming call, Unavailable, once stopping is closed
// (a nil channel: never), however its handler waits: a health Watch
// waits for its context, but a reflection stream waits in RecvMsg, which
// nothing on the server's side interrupts but the end of the call. A
// server's GracefulStop waits for every call, so one open stream held a
// shutdown until it was forced. The handler runs in a goroutine of its
// own; once the call is ended, its context is cancelled, and whatever it
// still sends is dropped (SendMsg and the header calls fail without
// touching the stream, which gRPC forbids once the call has returned);
// its pending RecvMsg returns as gRPC ends the stream. The call answers
// Unavailable whatever the handler then returns. The interceptors that
// record a call (its log line, its metrics) come before it, so that they
// record that answer, the one the client gets, not the handler's; the
// panic recovery (recoverStreams) comes after it, in the handler's
// goroutine, where a panic would otherwise end the process.
func endStreams(stopping <-chan struct{}) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if stopping == nil {
			return handler(srv, ss)
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		s := &endableStream{ServerStream: ss, ctx: ctx}
		done := make(chan error, 1)
		go func() { done <- handler(srv, s) }()
		select {
		case err := <-done:
			return err
		case <-stopping:
		}
		select {
		case err := <-done: // finished on its own as the stop began
			return err
		default:
		}
		cancel()
		s.mu.Lock() // waits for a SendMsg in progress
		s.ended = true
		s.mu.Unlock()
		// Whatever the handler returns from here on answers the
		// cancellation (a health Watch: Canceled, "Stream has ended"),
		// not the call: the call ends because the server stops.
		return errStopping
	}
}

var errStopping = bank.NewStatus(codes.Unavailable, "SHUTTING_DOWN", "the server is shutting down").Err()

// endableStream is a stream whose sending stops once ended.
type endableStream struct {
	grpc.ServerStream
	ctx   context.Context
	mu    sync.Mutex
	ended bool
}

func (s *endableStream) Context() context.Context { return s.ctx }

// live runs send unless the stream has ended, holding the lock so that
// ending waits for a send in progress.
func (s *endableStream) live(send func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errStopping
	}
	return send()
}

func (s *endableStream) SendMsg(m any) error {
	return s.live(func() error { return s.ServerStream.SendMsg(m) })
}

func (s *endableStream) SetHeader(md metadata.MD) error {
	return s.live(func() error { return s.ServerStream.SetHeader(md) })
}

func (s *endableStream) SendHeader(md metadata.MD) error {
	return s.live(func() error { return s.ServerStream.SendHeader(md) })
}

func (s *endableStream) SetTrailer(md metadata.MD) {
	s.live(func() error { s.ServerStream.SetTrailer(md); return nil })
}

// callContext gives a call's context its request id (the caller's, if it
// sent a usable one, else a new one), for the errors bank.ToStatus logs,
// and its source unless tapPeers gave it one.
func callContext(ctx context.Context) (context.Context, string) {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDKey); len(v) == 1 && len(v[0]) <= 64 {
			id = v[0]
		}
	}
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	ctx = bank.WithRequestID(ctx, id)
	if bank.Source(ctx) == "" {
		ctx = bank.WithSource(ctx, peerKey(ctx))
	}
	return ctx, id
}

// endCall, deferred by a unary call's interceptor, answers a panic in its
// handler Internal without detail for the peer, logging the stack, and
// logs the call at Debug.
func endCall(ctx context.Context, log *slog.Logger, method, id string, start time.Time, err *error) {
	if p := recover(); p != nil {
		*err = panicked(log, method, id, p)
	}
	logCall(ctx, log, method, id, start, err)
}

// panicked logs a handler's panic p with its stack (called while
// panicking) and is the call's answer.
func panicked(log *slog.Logger, method, id string, p any) error {
	log.Error("panic in handler", "method", method, "request_id", id, "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// logCall logs a call at Debug with the code of *err.
func logCall(ctx context.Context, log *slog.Logger, method, id string, start time.Time, err *error) {
	// Checked first: the arguments cost an allocation on every call.
	if log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("call", "method", method, "request_id", id, "code", status.Code(*err).String(), "duration", time.Since(start))
	}
}
