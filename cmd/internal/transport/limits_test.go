package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	pb "github.com/blindbank/blindbank/proto"
)

// countingBank answers PrepareWithdraw with nothing, counting the calls
// that reach it.
type countingBank struct {
	pb.UnimplementedBankServer
	calls atomic.Int64
}

func (b *countingBank) PrepareWithdraw(context.Context, *pb.PrepareWithdrawRequest) (*pb.PrepareWithdrawResponse, error) {
	b.calls.Add(1)
	return &pb.PrepareWithdrawResponse{}, nil
}

func serveCountingBank(t *testing.T, c Server) (pb.BankClient, *countingBank) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(c.Options()...)
	b := &countingBank{}
	pb.RegisterBankServer(s, b)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := Dial(lis.Addr().String(), ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewBankClient(conn), b
}

func items(n int) *pb.PrepareWithdrawRequest {
	req := &pb.PrepareWithdrawRequest{Items: make([]*pb.PrepareWithdrawRequest_Item, n)}
	for i := range req.Items {
		req.Items[i] = &pb.PrepareWithdrawRequest_Item{Denomination: make([]byte, 32), Request: make([]byte, 32)}
	}
	return req
}

// TestListRequestsBounded: a request carrying a list is refused before it
// is decoded when it is larger than its kind can honestly be, and one of
// the largest honest size (1024 items) is served.
func TestListRequestsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bankc, b := serveCountingBank(t, Server{Metrics: m})
	ctx := context.Background()
	if _, err := bankc.PrepareWithdraw(ctx, items(1024)); err != nil {
		t.Fatalf("1024 first-round items: %v", err)
	}
	// 100,000 empty items: 200 KB on the wire.
	flood := &pb.PrepareWithdrawRequest{Items: make([]*pb.PrepareWithdrawRequest_Item, 100_000)}
	for i := range flood.Items {
		flood.Items[i] = &pb.PrepareWithdrawRequest_Item{}
	}
	// Refused ResourceExhausted, the peer's fault, not INTERNAL, which
	// gRPC makes of any error a codec returns.
	if _, err := bankc.PrepareWithdraw(ctx, flood); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most") || bank.Reason(err) != "MESSAGE_TOO_LARGE" {
		t.Fatalf("a flood of empty items: %v (reason %q), want refused before decoding, MESSAGE_TOO_LARGE", err, bank.Reason(err))
	}
	hashes := &pb.CoinsSpentRequest{CoinIds: make([][]byte, 100_000)}
	if _, err := bankc.CoinsSpent(ctx, hashes); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a flood of empty coin ids: %v, want refused before decoding", err)
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached the handler, want 1", n)
	}
	for _, method := range []string{"/blindbank.v1.Bank/PrepareWithdraw", "/blindbank.v1.Bank/CoinsSpent"} {
		if n := refusals(t, reg, method); n != 1 {
			t.Errorf("%g refusals of %s counted, want 1", n, method)
		}
	}
}

// TestUndecodedGivesPlaceBack: a call refused undecoded gives its place
// among the peer's calls in progress back before its answer, as any
// other, so a client using its one place can call again at once.
func TestUndecodedGivesPlaceBack(t *testing.T) {
	bankc, b := serveCountingBank(t, Server{PeerCalls: 1})
	ctx := context.Background()
	flood := &pb.CoinsSpentRequest{CoinIds: make([][]byte, 100_000)}
	for i := range 200 {
		if _, err := bankc.CoinsSpent(ctx, flood); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most") {
			t.Fatalf("flood %d: %v, want refused before decoding", i, err)
		}
		if _, err := bankc.PrepareWithdraw(ctx, items(1)); err != nil {
			t.Fatalf("the call after flood %d: %v", i, err)
		}
	}
	if n := b.calls.Load(); n != 200 {
		t.Fatalf("%d calls reached the handler, want 200", n)
	}
}

// refusals is the count of ResourceExhausted calls of method in reg.
func refusals(t *testing.T, reg *prometheus.Registry, method string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != RPCCallsMetric {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == "ResourceExhausted" {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestPeerLimit: the per-peer rate refuses calls before their messages are
// read, and charges a first-round call by its items: at one call every 10
// seconds (a burst of 20), a call of 1024 items empties the bucket. (At
// 10 a second, decoding the call under -race on a busy machine took long
// enough for a token to come back.)
func TestPeerLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bankc, b := serveCountingBank(t, Server{PeerLimit: bank.NewRateLimiter(0.1, 20, 100), Metrics: m})
	ctx := context.Background()
	if _, err := bankc.PrepareWithdraw(ctx, items(1024)); err != nil {
		t.Fatalf("a large call on a full bucket: %v", err)
	}
	if _, err := bankc.PrepareWithdraw(ctx, items(1)); status.Code(err) != codes.ResourceExhausted || bank.Reason(err) != "ADDRESS_RATE_LIMITED" {
		t.Fatalf("a call after the bucket was emptied: %v (reason %q), want ResourceExhausted, ADDRESS_RATE_LIMITED", err, bank.Reason(err))
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached the handler, want 1", n)
	}
	// The bucket empty, the call was refused as its stream opened.
	if n := refusals(t, reg, "(peer rate)"); n != 1 {
		t.Errorf("%g refusals at the stream's opening counted, want 1", n)
	}
}

// TestPeerKey: a peer is its address without the port; an IPv6 peer is its
// /64 network, which one host may hold whole.
func TestPeerKey(t *testing.T) {
	at := func(addr string) string {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return peerKey(peer.NewContext(context.Background(), &peer.Peer{Addr: a}))
	}
	if a, b := at("192.0.2.1:443"), at("192.0.2.1:9"); a != "192.0.2.1" || b != a {
		t.Errorf("IPv4: %q and %q", a, b)
	}
	if at("192.0.2.2:443") == at("192.0.2.1:443") {
		t.Error("two IPv4 addresses share a key")
	}
	if a, b := at("[2001:db8:1:2::1]:443"), at("[2001:db8:1:2:ffff::7]:5"); a != "2001:db8:1:2::/64" || b != a {
		t.Errorf("one IPv6 /64: %q and %q", a, b)
	}
	if at("[2001:db8:1:3::1]:443") == at("[2001:db8:1:2::1]:443") {
		t.Error("two IPv6 /64s share a key")
	}
	// A link-local peer, whose address carries its zone, is its /64 on its
	// link; the same /64 on another link is another network.
	if a, b := at("[fe80::1%lo]:443"), at("[fe80::2%lo]:5"); a != "fe80::/64%lo" || b != a {
		t.Errorf("one link-local /64: %q and %q", a, b)
	}
	other := addrKey(&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth1"})
	if other == at("[fe80::1%lo]:443") {
		t.Errorf("peers on two links share the key %q", other)
	}
	if got := peerKey(context.Background()); got != "unknown" {
		t.Errorf("no peer: %q", got)
	}
}

// TestReasonsDocumented: the transport's refusals carry the reasons
// docs/PROTOCOL.md §6.1 lists for them, with their codes.
func TestReasonsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []error{errTooFast, errTooMany, errStopping, checkToken(context.Background(), []byte("x")),
		tooLarge(&pb.CoinsSpentRequest{}, 2, 1), errNoClientCert} {
		row := fmt.Sprintf("| `%s` | `%s` |", bank.Reason(e), bank.CodeName(status.Code(e)))
		if bank.Reason(e) == "" || !strings.Contains(string(raw), row) {
			t.Errorf("%v: §6.1 has no row %q", e, row)
		}
	}
}
