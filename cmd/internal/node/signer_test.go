package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/h2frames"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// testSigner is a signer process's serving half, in the test's process.
type testSigner struct {
	t      *testing.T
	dir    string // holds its keys.json and nonce record
	socket string
	srv    *bank.SignerServer
	g      *grpc.Server
	frames *h2frames.Listener // what crosses its socket
}

// startSigner serves the key file in dir on socket.
func startSigner(t *testing.T, dir, socket string) *testSigner {
	t.Helper()
	k, err := bank.LoadKeys(filepath.Join(dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bank.NewSignerServer(k, filepath.Join(dir, bank.SignerNoncesFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := bank.ListenSignerSocket(socket)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	s := &testSigner{t: t, dir: dir, socket: socket, srv: srv, g: transport.NewSignerServer(), frames: h2frames.Listen(ln)}
	srv.Register(s.g)
	go s.g.Serve(s.frames)
	t.Cleanup(s.kill)
	return s
}

// kill stops the signer at once, as a crash would (the socket goes).
func (s *testSigner) kill() {
	s.g.Stop()
	s.srv.Close()
}

// startEnvWithSigner starts a bank whose denominations are signed by a
// signer on a unix socket; both load the shared test key file.
func startEnvWithSigner(t *testing.T) (*env, *testSigner) {
	t.Helper()
	sdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sdir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSigner(t, sdir, filepath.Join(sdir, "s.sock"))
	// bankd's copy of the key file holds no denomination private keys.
	dir := t.TempDir()
	path := filepath.Join(dir, bank.KeysFile)
	if err := os.WriteFile(path, testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	k.StripDenominationKeys()
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || bytes.Contains(b, []byte(`"private"`)) {
		t.Fatalf("stripped key file still holds private denomination keys (%v)", err)
	}
	if _, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "--signer") {
		t.Fatalf("a bank with stripped keys and no signer started: %v", err)
	}
	e := &env{t: t, clock: newClock(), dir: dir}
	t.Cleanup(e.audit)
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Now: e.clock.Now, Signer: "unix://" + s.socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.bank, e.admin = b, pb.NewBankAdminClient(conn)
	e.ks, _ = b.Bank.KeySet()
	return e, s
}

// TestSignerProcess: with the denomination keys in a signer on a unix
// socket, wallets withdraw (CS and RSA coins), swap and pay as usual; with
// the signer gone, withdrawals fail with Unavailable and debit nothing;
// once it is back, they work again.
func TestSignerProcess(t *testing.T) {
	ctx := context.Background()
	e, s := startEnvWithSigner(t)
	for _, d := range e.bank.Bank.Keys().Denoms {
		if _, ok := d.Private.(*bank.RemoteDenomKey); !ok {
			t.Fatalf("denomination %s signs with %T, not the signer", d.Value, d.Private)
		}
	}
	if fi, err := os.Stat(s.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want mode 0600", fi.Mode(), err)
	}
	shop := e.startMerchant("shop")
	bankc := e.dialBank()
	w := e.newWallet(t.TempDir(), "EUR:30.00")
	defer w.Close()

	// EUR:10.00 takes RSA coins (1.28 and up) and CS coins (below).
	coins, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:10.00"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ciphers := map[ecash.Cipher]int{}
	for _, c := range coins {
		for _, d := range e.ks.Denominations {
			if d.ID == c.Denom {
				ciphers[d.Key.Cipher()]++
			}
		}
	}
	if ciphers[ecash.CipherCS] == 0 || ciphers[ecash.CipherRSA] == 0 {
		t.Fatalf("withdrew %v coins by cipher; want both", ciphers)
	}
	if _, err := w.Swap(ctx, bankc, mustAmount(t, "EUR:0.03")); err != nil {
		t.Fatal("swap:", err)
	}
	order := shop.order(t, "EUR:2.50")
	if _, err := w.Pay(ctx, bankc, shop.client, shop.node.Addr, order, nil); err != nil {
		t.Fatal("pay:", err)
	}
	if st := shop.status(t, order); st.Status != "paid" {
		t.Fatalf("order %s", st.Status)
	}

	// The link carried no flow-control PINGs: both ends use the fixed
	// window (bankd's client of the signer, and the signer's server).
	if from, to := s.frames.FromClients.Pings(), s.frames.FromServer.Pings(); from+to > 0 {
		t.Errorf("PINGs on the signer's link: %d from the bank, %d from the signer", from, to)
	}
	for side, c := range map[string]*h2frames.Counter{"bank": s.frames.FromClients, "signer": s.frames.FromServer} {
		if stream, conn := c.Windows(); stream != transport.FlowWindow || conn != transport.FlowWindow {
			t.Errorf("the %s announced windows of %d bytes a stream and %d the connection, want %d", side, stream, conn, transport.FlowWindow)
		}
	}

	// The signer dies: withdrawals fail cleanly, nothing is debited.
	s.kill()
	acct, err := w.Account()
	if err != nil {
		t.Fatal(err)
	}
	before := e.balance(acct)
	start := time.Now()
	_, err = w.Withdraw(ctx, bankc, mustAmount(t, "EUR:1.00"), nil)
	if err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("withdrawal without the signer: %v; want Unavailable", err)
	}
	t.Logf("without the signer: %v", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("withdrawal without the signer took %s to fail", d)
	}
	if after := e.balance(acct); after != before {
		t.Fatalf("balance %s after a failed withdrawal, was %s", after, before)
	}

	// It comes back on the same socket: withdrawals work again (the
	// wallet's pending withdrawal too).
	startSigner(t, s.dir, s.socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = w.Withdraw(ctx, bankc, mustAmount(t, "EUR:1.00"), nil)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal("withdrawal after the signer restarted:", err)
	}
	if got := e.balance(acct); got != "EUR:19.00" {
		t.Fatalf("balance %s, want EUR:19.00 (30 - 10 - 1)", got)
	}
}

// TestSignerRefusesNonceReuse: the signer itself never answers two different
// challenges for one CS nonce, across restarts, so a compromised bankd
// cannot extract a CS key from it; the same challenge is answered again.
func TestSignerRefusesNonceReuse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := bank.LoadKeys(filepath.Join(dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	d := k.Denoms[0].Denomination // EUR:0.01, CS
	sock := filepath.Join(dir, "s.sock")
	s := startSigner(t, dir, sock)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSignerClient(conn)

	seed, _ := ecash.DerivePlanchet(make([]byte, 32), 0)
	pr, err := c.Prepare(ctx, &pb.SignerPrepareRequest{Denomination: d.ID[:], Request: d.Key.PrepareRequest(seed.BlindSeed)}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	blind := func(msg string) []byte {
		b, _, err := d.Key.Blind(seed.BlindSeed, pr.Answer, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sign := func(b []byte) error {
		_, err := c.BlindSign(ctx, &pb.SignerBlindSignRequest{Items: []*pb.SignerBlindSignItem{{Denomination: d.ID[:], Blinded: b}}}, grpc.WaitForReady(true))
		return err
	}
	first := blind("first coin")
	if err := sign(first); err != nil {
		t.Fatal(err)
	}
	if err := sign(first); err != nil {
		t.Fatal("the same challenge again:", err)
	}
	if err := sign(blind("second coin")); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a second challenge for the nonce: %v; want AlreadyExists", err)
	}
	s.kill()
	startSigner(t, dir, sock)
	// A call made before the client has seen the old connection die fails
	// Unavailable on it ("error reading from server: EOF"); gRPC then
	// reconnects, and a retry reaches the new signer.
	err = sign(blind("third coin"))
	for i := 0; i < 50 && status.Code(err) == codes.Unavailable; i++ {
		time.Sleep(20 * time.Millisecond)
		err = sign(blind("third coin"))
	}
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("after a restart, a second challenge for the nonce: %v; want AlreadyExists", err)
	}
	if err := sign(first); err != nil {
		t.Fatal("after a restart, the same challenge again:", err)
	}
}

// TestSignerMismatch: a bank refuses to start with a signer holding other
// keys, and the signer refuses a path that is not a stale socket.
func TestSignerMismatch(t *testing.T) {
	sdir := t.TempDir()
	other, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Cipher: ecash.CipherCS}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Save(filepath.Join(sdir, bank.KeysFile)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sdir, "s.sock")
	startSigner(t, sdir, sock)
	if _, err := bank.ListenSignerSocket(sock); err == nil {
		t.Fatal("listened on a socket another signer serves")
	}
	if _, err := bank.ListenSignerSocket(filepath.Join(sdir, bank.KeysFile)); err == nil {
		t.Fatal("replaced a regular file with a socket")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Signer: "unix://" + sock})
	if !errors.Is(err, bank.ErrSignerMismatch) {
		t.Fatalf("started with another bank's signer: %v", err)
	}
}
