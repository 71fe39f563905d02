package transport

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
)

// echoStream registers one bidirectional streaming method,
// /test.Stream/Echo, answering each message (a HealthCheckRequest) with
// a HealthCheckResponse; a message whose service is "panic" panics, and
// the handler sees the request id and source the interceptors give.
func echoStream(seen chan<- [2]string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Stream",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName: "Echo", ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				seen <- [2]string{RequestID(ss.Context()), bank.Source(ss.Context())}
				for {
					in := new(healthpb.HealthCheckRequest)
					if err := ss.RecvMsg(in); err == io.EOF {
						return nil
					} else if err != nil {
						return err
					}
					if in.Service == "panic" {
						panic("secret detail")
					}
					if err := ss.SendMsg(&healthpb.HealthCheckResponse{}); err != nil {
						return err
					}
				}
			},
		}},
	}
}

// TestStreamInterceptors: streaming calls went through none of the
// interceptors, only unary ones being installed: one stream, charged
// once by the per-peer rate, carried any number of requests; the admin
// server answered a health Watch without the token; a panic in a stream
// handler brought the process down; streams were neither counted nor
// given a request id. Now each message after a stream's first costs one
// call of the peer's rate, and the rest applies to streams as to calls.
func TestStreamInterceptors(t *testing.T) {
	metrics, err := NewRPCMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan [2]string, 10)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// One call every 10 seconds, bursts of 10.
	s := grpc.NewServer(Server{PeerLimit: bank.NewRateLimiter(0.1, 10, 100), Metrics: metrics}.Options()...)
	s.RegisterService(echoStream(seen), struct{}{})
	go s.Serve(lis)
	defer s.Stop()
	conn, err := Dial(lis.Addr().String(), ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The rate: 1000 requests on one stream.
	st, err := conn.NewStream(ctx, desc, "/test.Stream/Echo")
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for range 1000 {
		if err = st.SendMsg(&healthpb.HealthCheckRequest{}); err != nil {
			break
		}
		if err = st.RecvMsg(new(healthpb.HealthCheckResponse)); err != nil {
			break
		}
		answered++
	}
	if err == io.EOF { // the stream ended: its status is RecvMsg's
		err = st.RecvMsg(new(healthpb.HealthCheckResponse))
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("one stream at a per-peer rate of one call every 10 seconds: %d requests answered, then %v; want ResourceExhausted", answered, err)
	} else if answered > 10 {
		t.Errorf("one stream at a per-peer rate of one call every 10 seconds, bursts of 10: %d requests answered", answered)
	}
	var m dto.Metric
	if err := metrics.calls.WithLabelValues("/test.Stream/Echo", "ResourceExhausted").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("streams refused by the rate counted %v times, want 1", got)
	}
	if id := <-seen; len(id[0]) == 0 || id[1] == "" {
		t.Errorf("a stream's handler saw request id %q and source %q", id[0], id[1])
	}

	// A panic: Internal without detail, and the server lives on. With
	// Stopping set, the handler runs in endStreams' goroutine, where the
	// panic must be recovered.
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s2 := grpc.NewServer(Server{Stopping: make(chan struct{})}.Options()...)
	s2.RegisterService(echoStream(seen), struct{}{})
	go s2.Serve(lis2)
	defer s2.Stop()
	conn2, err := Dial(lis2.Addr().String(), ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	st, err = conn2.NewStream(ctx, desc, "/test.Stream/Echo")
	if err != nil {
		t.Fatal(err)
	}
	<-seen
	if err := st.SendMsg(&healthpb.HealthCheckRequest{Service: "panic"}); err != nil {
		t.Fatal(err)
	}
	err = st.RecvMsg(new(healthpb.HealthCheckResponse))
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "secret") {
		t.Errorf("a panicking stream handler: %v; want Internal without detail", err)
	}

	// The admin server's token, on a stream.
	admin := serveHealth(t, Server{Token: strings.Repeat("t", 32)}.Options()...)
	for _, tok := range []string{"", strings.Repeat("t", 32)} {
		var extra []grpc.DialOption
		if tok != "" {
			extra = append(extra, grpc.WithPerRPCCredentials(tokenCreds(tok)))
		}
		conn, err := Dial(admin, ClientConfig{Plaintext: true}, extra...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Recv()
		if want := map[bool]codes.Code{false: codes.Unauthenticated, true: codes.OK}[tok != ""]; status.Code(err) != want {
			t.Errorf("admin health Watch, token %q: %v; want %v", tok, err, want)
		}
	}
}
