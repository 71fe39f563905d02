package transport

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestStoppedStreamRecorded: a stream the stop ends answers its client
// Unavailable (endStreams), but the log and the metrics, run in the
// handler's goroutine after endStreams, recorded what the handler then
// returned, a health Watch's Canceled. They now run before endStreams and
// record what the client gets.
func TestStoppedStreamRecorded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	stopping := make(chan struct{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(Server{Log: log, Metrics: m, Stopping: stopping}.Options()...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	defer s.Stop()
	conn, err := Dial(lis.Addr().String(), ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	close(stopping)
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch ended by the stop: %v; want Unavailable", err)
	}
	// The log line comes last, after the metrics, whichever goroutine
	// records them; wait for it.
	const method = "/grpc.health.v1.Health/Watch"
	var line string
	for line == "" && ctx.Err() == nil {
		for l := range strings.Lines(buf.String()) {
			if strings.Contains(l, "method="+method) {
				line = l
			}
		}
		time.Sleep(time.Millisecond)
	}
	if !strings.Contains(line, "code=Unavailable") {
		t.Errorf("the stopped Watch logged %q; want code=Unavailable", line)
	}
	for code, want := range map[string]float64{"Unavailable": 1, "Canceled": 0} {
		var c dto.Metric
		if err := m.calls.WithLabelValues(method, code).Write(&c); err != nil {
			t.Fatal(err)
		}
		if got := c.GetCounter().GetValue(); got != want {
			t.Errorf("stopped Watches counted %s: %v; want %v", code, got, want)
		}
	}
}
