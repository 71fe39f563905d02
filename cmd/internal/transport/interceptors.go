package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
)

// RequestIDKey is the metadata key that carries a request id from wallet to
// merchant to bank, so one payment can be followed through every log.
const RequestIDKey = "x-request-id"

type requestIDCtx struct{}

// RequestID returns the request id of an incoming call's context.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDCtx{}).(string)
	return id
}

// DefaultCallTimeout bounds every outbound call that has no deadline of its
// own, so a silent peer cannot hold a caller forever.
const DefaultCallTimeout = 30 * time.Second

// serverInterceptors (1) take the caller's request id, or make one, (2) turn
// a panic in a handler into Internal without detail for the peer, logging
// the stack, and (3) log each call's method, code and duration at Debug.
func serverInterceptors(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
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
		ctx = context.WithValue(ctx, requestIDCtx{}, id)
		ctx = metadata.AppendToOutgoingContext(ctx, RequestIDKey, id)
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in handler", "method", info.FullMethod, "request_id", id, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
			// Checked first: the arguments cost an allocation on every call.
			if log.Enabled(ctx, slog.LevelDebug) {
				log.Debug("call", "method", info.FullMethod, "request_id", id, "code", status.Code(err).String(), "duration", time.Since(start))
			}
		}()
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

// limitPeers refuses calls beyond a peer address's rate with
// ResourceExhausted.
func limitPeers(l *bank.RateLimiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		key := "unknown"
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			key = p.Addr.String()
			if host, _, err := net.SplitHostPort(key); err == nil {
				key = host
			}
		}
		if !l.Allow(key, time.Now()) {
			return nil, status.Error(codes.ResourceExhausted, "too many requests from this address; slow down")
		}
		return handler(ctx, req)
	}
}
