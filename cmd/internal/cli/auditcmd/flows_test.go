package auditcmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

var update = flag.Bool("update", false, "rewrite the example transcripts in testdata/transcripts from fresh runs")

// transcriptsDir holds the example transcripts: the good ones from real
// flows, the bank's key set they verify against, and tampered/ with the
// manifest of what each tampered one must fail.
const transcriptsDir = "../../../../testdata/transcripts"

// The example transcripts, by file name.
const (
	exWithdrawPay     = "wallet-withdraw-pay.jsonl"
	exMerchantPay     = "merchant-pay.jsonl"
	exChange          = "wallet-change.jsonl"
	exDoubleSpend     = "wallet-double-spend.jsonl"
	exNetBill         = "wallet-netbill.jsonl"
	exMerchantNetBill = "merchant-netbill.jsonl"
	keySetFile        = "keyset.signed"
)

// flowBank is a bank and a merchant (with a till) on loopback gRPC, as
// wallet/wallet_test.go's fixture and the till of checkbook_test.go.
type flowBank struct {
	keys     *bank.Keys
	bank     *bank.Bank
	bankc    pb.BankClient
	merchant *merchant.Merchant
	shop     pb.MerchantClient
	shopAcct uint64
	shopTr   *switchWriter // the merchant's transcript, switched per flow
}

// switchWriter sends writes to the buffer set last.
type switchWriter struct {
	mu sync.Mutex
	to *bytes.Buffer
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.to == nil {
		return len(b), nil
	}
	return s.to.Write(b)
}

func (s *switchWriter) set(b *bytes.Buffer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.to = b
}

func serveGRPC(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newFlowBank starts the bank: CS coins below one euro, RSA above (both
// ciphers in every flow), and a merchant selling a song and a book.
func newFlowBank(t *testing.T) *flowBank {
	t.Helper()
	var specs []bank.DenomSpec
	for _, v := range []uint64{1, 2, 5, 10, 50} {
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS})
	}
	for _, v := range []uint64{100, 200} {
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherRSA})
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := bank.New(store, k, time.Now, nil)
	f := &flowBank{keys: k, bank: b, shopTr: &switchWriter{}}
	f.bankc = pb.NewBankClient(serveGRPC(t, func(s *grpc.Server) { pb.RegisterBankServer(s, b.PublicServer()) }))

	cat := t.TempDir()
	song := []byte("blindbank example goods: one song, FLAC\n")
	if err := os.WriteFile(filepath.Join(cat, "song.flac"), song, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cat, "book.epub"), bytes.Repeat([]byte("a book. "), 64), 0o644); err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(cat, merchant.CatalogueFile), []byte(`{"products": [
		{"id": "song", "file": "song.flac", "price": "EUR:1.50", "description": "a song"},
		{"id": "book", "file": "book.epub", "price": "EUR:4.00", "description": "a book"}]}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if f.shopAcct, err = b.OpenAccount(ctx, "shop", pub, true); err != nil {
		t.Fatal(err)
	}
	m, err := merchant.Open(ctx, merchant.Config{
		Dir: dir, Account: f.shopAcct, Bank: f.bankc, FS: vfs.NewMem(), Catalogue: cat, Transcript: f.shopTr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f.merchant = m
	f.shop = pb.NewMerchantClient(serveGRPC(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) }))
	return f
}

// customer opens a wallet in dir recording to tr, with an account holding funds.
func (f *flowBank) customer(t *testing.T, dir string, tr *bytes.Buffer, funds string) *wallet.Wallet {
	t.Helper()
	w, err := wallet.Create(dir, wallet.Options{Transcript: tr})
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.bank.OpenAccount(context.Background(), "customer", w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bank.Credit(context.Background(), id, ecash.MustParseAmount(funds), "", ""); err != nil {
		t.Fatal(err)
	}
	return w
}

func (f *flowBank) order(t *testing.T, amount, summary string) string {
	t.Helper()
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount(amount), summary, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return o.ID
}

func (f *flowBank) pay(t *testing.T, w *wallet.Wallet, order string) (*ecash.DepositReceipt, error) {
	t.Helper()
	return w.Pay(context.Background(), f.bankc, f.shop, "shop", order, nil)
}

// buy buys at whatever price the test's own merchant quotes: the flows are
// about the transcripts, not the price.
func (f *flowBank) buy(w *wallet.Wallet, product, memo string) (*wallet.Purchase, error) {
	return w.Buy(context.Background(), f.bankc, f.shop, product, nil, memo, func(*echeck.Quote) error { return nil })
}

func withdraw(t *testing.T, f *flowBank, w *wallet.Wallet, amount string) {
	t.Helper()
	if _, err := w.Withdraw(context.Background(), f.bankc, ecash.MustParseAmount(amount), nil); err != nil {
		t.Fatal(err)
	}
}

// runFlows runs the example flows against one bank and returns their
// transcripts by file name, and the bank's keys.
func runFlows(t *testing.T) (map[string][]byte, *bank.Keys) {
	t.Helper()
	ctx := context.Background()
	f := newFlowBank(t)
	out := map[string][]byte{}

	// Withdraw and pay exactly: EUR:2.00 as 0.01 0.02 0.05 0.10 0.50 1.00
	// 0.10 0.10 0.10 0.02; EUR:1.52 is 1.00 + 0.50 + 0.02, no change.
	var w1, m1 bytes.Buffer
	f.shopTr.set(&m1)
	w := f.customer(t, t.TempDir(), &w1, "EUR:10.00")
	withdraw(t, f, w, "EUR:2.00")
	if _, err := f.pay(t, w, f.order(t, "EUR:1.52", "a croissant and a coffee")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out[exWithdrawPay], out[exMerchantPay] = w1.Bytes(), m1.Bytes()

	// Change: EUR:1.00 as 0.01 0.02 0.02 0.05 0.10 ×4 0.50; EUR:0.04 is
	// 0.02 + 0.02; the next EUR:0.04 needs the 0.05 coin swapped first. Then
	// EUR:0.10 goes back to the wallet's own account.
	var w2 bytes.Buffer
	f.shopTr.set(nil)
	w = f.customer(t, t.TempDir(), &w2, "EUR:10.00")
	withdraw(t, f, w, "EUR:1.00")
	for _, what := range []string{"a sweet", "another sweet"} {
		if _, err := f.pay(t, w, f.order(t, "EUR:0.04", what)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Return(ctx, f.bankc, ecash.MustParseAmount("EUR:0.10")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out[exChange] = w2.Bytes()

	// A double spend: a copy of a wallet (directory and transcript so far)
	// pays with coins the original spent; the bank refuses with a proof.
	var w3 bytes.Buffer
	dir := t.TempDir()
	w = f.customer(t, dir, &w3, "EUR:10.00")
	withdraw(t, f, w, "EUR:1.00")
	w.Close()
	copyDir := t.TempDir()
	copyTree(t, dir, copyDir)
	w3copy := bytes.NewBuffer(bytes.Clone(w3.Bytes()))
	orig, err := wallet.Open(dir, wallet.Options{Transcript: &w3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pay(t, orig, f.order(t, "EUR:0.04", "a sweet")); err != nil {
		t.Fatal(err)
	}
	orig.Close()
	dup, err := wallet.Open(copyDir, wallet.Options{Transcript: w3copy})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.pay(t, dup, f.order(t, "EUR:0.04", "a sweet, again"))
	if !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("the copy paid with spent coins: %v", err)
	}
	dup.Close()
	out[exDoubleSpend] = w3copy.Bytes()

	// NetBill from the account: a song (approved: K released), a book the
	// account cannot afford (a signed decline), and a check.
	var w4, m4 bytes.Buffer
	f.shopTr.set(&m4)
	w = f.customer(t, t.TempDir(), &w4, "EUR:3.00")
	if _, err := f.buy(w, "song", "music"); err != nil {
		t.Fatal(err)
	}
	var declined *wallet.DeclinedError
	if _, err := f.buy(w, "book", ""); !errors.As(err, &declined) {
		t.Fatalf("buying a book without the money: %v", err)
	}
	if _, err := w.WriteCheck(ctx, f.bankc, f.shop, ecash.MustParseAmount("EUR:1.00"), "rent"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f.shopTr.set(nil)
	out[exNetBill], out[exMerchantNetBill] = w4.Bytes(), m4.Bytes()
	return out, f.keys
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func steps(t *testing.T, transcript []byte) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(transcript), "\n"), "\n") {
		rec, err := parseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.Step)
	}
	return out
}

func auditBytes(t *testing.T, name string, transcript []byte, keys *KeySets, complete bool) *Report {
	t.Helper()
	rep, err := Verify(bytes.NewReader(transcript), name, keys, Options{Complete: complete})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func mustPass(t *testing.T, rep *Report) {
	t.Helper()
	if f := rep.FirstFailure(); f != nil {
		var buf bytes.Buffer
		writeReport(&buf, rep)
		t.Fatalf("%s: line %d %s: %s\n%s", rep.File, f.Line, f.Step, f.Error, buf.String())
	}
	if len(rep.Lines) == 0 {
		t.Fatalf("%s: empty", rep.File)
	}
}

// TestFlows runs the example flows against a real bank, merchant and
// wallets, and checks that audit accepts every transcript they record, as
// complete histories. With -update it rewrites testdata/transcripts: the
// transcripts, the key set, and the tampered ones with their manifest.
func TestFlows(t *testing.T) {
	got, bk := runFlows(t)
	ks, err := NewKeySets(bk.KeySet())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ // steps each flow must show
		exWithdrawPay:     {"withdraw-request", "coin", "payment-request", "sealed-payment", "deposit-receipt"},
		exMerchantPay:     {"payment-request", "sealed-payment", "deposit-receipt"},
		exChange:          {"withdraw-request", "swap-request", "coin", "deposit-receipt"},
		exDoubleSpend:     {"withdraw-request", "sealed-payment", "double-spend-proof"},
		exNetBill:         {"quote", "signed-epo", "epo-receipt"},
		exMerchantNetBill: {"price-request", "quote", "signed-epo", "endorsement", "epo-receipt"},
	}
	for name, tr := range got {
		have := steps(t, tr)
		for _, s := range want[name] {
			if !strings.Contains(" "+strings.Join(have, " ")+" ", " "+s+" ") {
				t.Errorf("%s has no %s: %v", name, s, have)
			}
		}
		if name == exWithdrawPay && strings.Contains(strings.Join(have, " "), "swap-request") {
			t.Errorf("%s: an exact payment made change", name)
		}
		mustPass(t, auditBytes(t, name, tr, ks, true))
	}
	if !*update {
		return
	}
	if err := os.MkdirAll(filepath.Join(transcriptsDir, tamperedDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(transcriptsDir, keySetFile), bk.KeySet().Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tr := range got {
		if err := os.WriteFile(filepath.Join(transcriptsDir, name), tr, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTampered(t, got, bk, ks)
}

// loadExamples reads the committed key set and transcripts.
func loadExamples(t *testing.T) (*KeySets, map[string][]byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(transcriptsDir, keySetFile))
	if err != nil {
		t.Fatal(err)
	}
	kset, err := ecash.DecodeKeySet(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySets(kset)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(transcriptsDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	if len(out) < 6 {
		t.Fatalf("%d example transcripts in %s", len(out), transcriptsDir)
	}
	return ks, out
}

// TestExampleTranscripts: the committed examples pass, as complete
// histories and as parts of one.
func TestExampleTranscripts(t *testing.T) {
	ks, files := loadExamples(t)
	for name, tr := range files {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mustPass(t, auditBytes(t, name, tr, ks, true))
			mustPass(t, auditBytes(t, name, tr, ks, false))
		})
	}
}
