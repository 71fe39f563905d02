package transport

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// RPCCallsMetric is the counter of calls served, labelled by method and code.
const RPCCallsMetric = "blindbank_rpc_requests_total"

// RPCMetrics count calls by method and gRPC code and time them by method.
type RPCMetrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewRPCMetrics registers the RPC metrics with reg.
func NewRPCMetrics(reg prometheus.Registerer) (*RPCMetrics, error) {
	m := &RPCMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RPCCallsMetric, Help: "gRPC calls served, by method and code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "blindbank_rpc_duration_seconds", Help: "gRPC call latency, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// refused counts a call refused before it reached the interceptors (a nil
// m counts nothing). what stands in for the method, which gRPC has not
// looked up yet (a peer may name any): a fixed few strings.
func (m *RPCMetrics) refused(what string) {
	if m != nil {
		m.calls.WithLabelValues(what, "ResourceExhausted").Inc()
	}
}

func (m *RPCMetrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	return resp, err
}

// streamInterceptor counts streaming calls by method and code as they
// end; their duration (a health Watch lasts as long as its client likes)
// is not a latency.
func (m *RPCMetrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}
