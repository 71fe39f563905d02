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
	var (
		mu    sync.Mutex
		calls []call
	)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		mu.Lock()
		calls = append(calls, call{info.FullMethod, p.Addr.String()})
		mu.Unlock()
		return h(ctx, req)
	}))
	pb.RegisterBankServer(srv, b.PublicServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	var dials, closes atomic.Int32
	dial := func(context.Context) (pb.BankClient, io.Closer, error) {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		dials.Add(1)
		return pb.NewBankClient(conn), closer(func() error { closes.Add(1); return conn.Close() }), nil
	}
	// froms returns the connections the calls of method came on since
	// call index i, in order.
	froms := func(i int, method string) []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, c := range calls[i:] {
			if c.method == "/blindbank.v1.Bank/"+method {
				out = append(out, c.from)
			}
		}
		return out
	}
	mark := func() int { mu.Lock(); defer mu.Unlock(); return len(calls) }

	for _, anonymous := range []bool{true, false} {
		opts := wallet.Options{}
		if anonymous {
			opts.Anonymous = dial
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
		main, mainConn, err := dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer mainConn.Close()
		dials.Store(0)
		before := mark()
		if _, err := main.GetKeys(ctx, &pb.GetKeysRequest{}); err != nil {
			t.Fatal(err)
		}
		mainAddr := froms(before, "GetKeys")[0]

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
		if anonymous && (dials.Load() < 2 || closes.Load() != dials.Load()) {
			t.Errorf("%d connections of their own made, %d closed; want every one closed", dials.Load(), closes.Load())
		}
		closes.Store(0)
	}
}

// closer is a function as an io.Closer.
type closer func() error

func (c closer) Close() error { return c() }
