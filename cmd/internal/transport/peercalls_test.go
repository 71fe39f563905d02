package transport

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPeerCallsQueueOnOneConnection: a gRPC client with more calls at once
// than its address may have in progress (PeerCalls) waits for places on
// its connection, which the server advertises no larger than PeerCalls,
// rather than having the excess refused: a merchant whose deposits outrun
// the cap slows down but loses none. Without the advertised limit the
// calls beyond the cap reach the server and are refused.
func TestPeerCallsQueueOnOneConnection(t *testing.T) {
	const calls, goroutines, each = 2, 8, 50
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bankc, b := serveCountingBank(t, Server{PeerCalls: calls, Metrics: m})
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range goroutines {
		wg.Go(func() {
			for range each {
				if _, err := bankc.PrepareWithdraw(context.Background(), items(1)); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d calls served, %d failed", b.calls.Load(), failed)
	if failed > 0 || refusals(t, reg, "(peer calls)") > 0 {
		t.Errorf("%d of %d calls failed, %g refused as beyond the address's %d in progress", failed, goroutines*each, refusals(t, reg, "(peer calls)"), calls)
	}
}
