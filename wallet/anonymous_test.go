package wallet_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// call is an RPC the bank served, and the connection (the client's
// address) it came on.
type call struct{ method, from string }

// recorder serves a bank on loopback gRPC and records the connection
// each call comes on; dial makes a new connection to it, counted.
type recorder struct {
	addr          string
	mu            sync.Mutex
	calls         []call
	dials, closes atomic.Int32
}

func record(t *testing.T, b *bank.Bank) *recorder {
	t.Helper()
	r := &recorder{}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		r.mu.Lock()
		r.calls = append(r.calls, call{info.FullMethod, p.Addr.String()})
		r.mu.Unlock()
		return h(ctx, req)
	}))
	pb.RegisterBankServer(srv, b.PublicServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	r.addr = lis.Addr().String()
	return r
}

func (r *recorder) dial(context.Context) (pb.BankClient, io.Closer, error) {
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	r.dials.Add(1)
	return pb.NewBankClient(conn), closer(func() error { r.closes.Add(1); return conn.Close() }), nil
}

// mark is the count of calls so far, for froms.
func (r *recorder) mark() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.calls) }

// froms returns the connections the calls of method came on since call
// index i, in order.
func (r *recorder) froms(i int, method string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls[i:] {
		if c.method == "/blindbank.v1.Bank/"+method {
			out = append(out, c.from)
		}
	}
	return out
}

// mainConn dials the caller's connection and returns it with the address
// its calls come from.
func (r *recorder) mainConn(t *testing.T) (pb.BankClient, string) {
	t.Helper()
	main, c, err := r.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	before := r.mark()
	if _, err := main.GetKeys(context.Background(), &pb.GetKeysRequest{}); err != nil {
		t.Fatal(err)
	}
	return main, r.froms(before, "GetKeys")[0]
}

// TestAnonymousConnections: with Options.Anonymous, a swap (its first
// round included) comes to the bank on a connection of its own, not the
// one the account's withdrawal came on, and each swap on another: the
// bank cannot join them by connection. Without it, all come on the one
// connection the caller passes.
func TestAnonymousConnections(t *testing.T) {
	ctx := context.Background()
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := bank.New(store, keys(t), time.Now, nil)
	r := record(t, b)
	froms, mark := r.froms, r.mark

	for _, anonymous := range []bool{true, false} {
		opts := wallet.Options{}
		if anonymous {
			opts.Anonymous = r.dial
		}
		w, err := wallet.Create(t.TempDir(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		id, err := b.OpenAccount(ctx, "customer", w.AccountKey(), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SetAccount(id); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Credit(ctx, id, ecash.MustParseAmount("EUR:10.00"), "", ""); err != nil {
			t.Fatal(err)
		}
		main, mainAddr := r.mainConn(t)
		r.dials.Store(0)
		r.closes.Store(0)

		start := mark()
		if _, err := w.Withdraw(ctx, main, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
			t.Fatal(err)
		}
		account := froms(start, "Withdraw")
		if len(account) != 1 || account[0] != mainAddr {
			t.Fatalf("withdrawals from %v; want one, on the caller's connection %s", account, mainAddr)
		}
		seen := map[string]bool{}
		for round := range 2 {
			before := mark()
			// Small coins: CS (its first round) below a euro.
			if _, err := w.Swap(ctx, main, ecash.MustParseAmount("EUR:0.50")); err != nil {
				t.Fatalf("swap %d: %v", round, err)
			}
			swaps, firsts := froms(before, "Swap"), froms(before, "PrepareWithdraw")
			if len(swaps) != 1 || len(firsts) != 1 {
				t.Fatalf("swap %d: Swap calls from %v, first rounds from %v; want one each", round, swaps, firsts)
			}
			on := swaps[0]
			switch {
			case anonymous && (on == account[0] || firsts[0] != on || seen[on]):
				t.Errorf("swap %d came from %s, its first round from %s; the withdrawal from %s, earlier swaps from %v: want a connection of its own",
					round, on, firsts[0], account[0], seen)
			case !anonymous && (on != account[0] || firsts[0] != on):
				t.Errorf("without Anonymous, swap %d came from %s, its first round from %s; want the caller's connection, %s", round, on, firsts[0], account[0])
			}
			seen[on] = true
		}
		if anonymous && (r.dials.Load() < 2 || r.closes.Load() != r.dials.Load()) {
			t.Errorf("%d connections of their own made, %d closed; want every one closed", r.dials.Load(), r.closes.Load())
		}
	}
}

// TestAnonymousRecoup: with Options.Anonymous, each revoked coin's recoup
// comes to the bank on a connection of its own: its request names the
// coin's blind seed, which must not tie it to the account's connection
// nor to the other coins'.
func TestAnonymousRecoup(t *testing.T) {
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	r := record(t, f.bank)
	// Coins of 1, 2, 4 and 8 cents; then the 1- and 2-cent keys revoked.
	w := f.walletWithCoins(t, wallet.Options{Anonymous: r.dial}, "EUR:10.00", "EUR:0.15")
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, f, k, ks, 1, time.Now())
	revokeValue(t, f, k, ks, 2, time.Now())
	main, mainAddr := r.mainConn(t)
	before := r.mark()
	rep, err := w.Recoup(ctx, main)
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("recoup: %+v, %v", rep, err)
	}
	recoups := r.froms(before, "Recoup")
	if len(recoups) != 2 || recoups[0] == recoups[1] || recoups[0] == mainAddr || recoups[1] == mainAddr {
		t.Errorf("the two coins' recoups came from %v, the caller's calls from %s; want each on a connection of its own", recoups, mainAddr)
	}
	if r.closes.Load() != r.dials.Load()-1 { // all but the caller's, closed at the end
		t.Errorf("%d connections made, %d closed", r.dials.Load(), r.closes.Load())
	}
}

// closer is a function as an io.Closer.
type closer func() error

func (c closer) Close() error { return c() }
