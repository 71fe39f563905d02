package merchant

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// writeCatalogue makes a catalogue directory from a catalogue.json text and
// files (name → contents).
func writeCatalogue(t *testing.T, js string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if js != "" {
		if err := os.WriteFile(filepath.Join(dir, CatalogueFile), []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadCatalogue(t *testing.T) {
	dir := writeCatalogue(t, `{"products": [
		{"id": "song-1", "file": "music/song.ogg", "price": "EUR:1.00", "description": "A song"},
		{"id": "book:2", "file": "book.txt", "price": "EUR:12.50"}]}`,
		map[string]string{"music/song.ogg": "la la la", "book.txt": "once upon a time"})
	c, err := LoadCatalogue(dir)
	if err != nil {
		t.Fatal(err)
	}
	ps := c.Products()
	if len(ps) != 2 || ps[0].ID != "song-1" || ps[1].ID != "book:2" {
		t.Fatalf("products %+v", ps)
	}
	if ps[0].Size != 8 || ps[0].Price != ecash.MustParseAmount("EUR:1.00") || ps[0].Description != "A song" {
		t.Fatalf("song %+v", ps[0])
	}
	if g, err := ps[1].goods(); err != nil || string(g) != "once upon a time" {
		t.Fatalf("goods %q %v", g, err)
	}
	if cur := c.Currencies(); len(cur) != 1 || cur[0] != "EUR" {
		t.Fatalf("currencies %v", cur)
	}
	// A file changed after loading is not sold.
	os.WriteFile(filepath.Join(dir, "book.txt"), []byte("a different story"), 0o644)
	if _, err := ps[1].goods(); !errors.Is(err, ErrGoodsChanged) {
		t.Fatalf("changed file: %v", err)
	}
}

func TestLoadCatalogueRefuses(t *testing.T) {
	one := func(fields string) string { return `{"products": [{` + fields + `}]}` }
	ok := map[string]string{"a.txt": "a"}
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	for _, tc := range []struct {
		name, js string
		files    map[string]string
		setup    func(dir string)
		want     string
	}{
		{"no catalogue", "", ok, nil, "no such file"},
		{"not json", `{"products": [`, ok, nil, "unexpected EOF"},
		{"trailing", `{"products": []} {}`, ok, nil, "trailing data"},
		{"unknown field", one(`"id": "a", "file": "a.txt", "prise": "EUR:1.00"`), ok, nil, "unknown field"},
		{"empty id", one(`"file": "a.txt", "price": "EUR:1.00"`), ok, nil, "empty id"},
		{"bad id", one(`"id": "a b", "file": "a.txt", "price": "EUR:1.00"`), ok, nil, "only letters"},
		{"long id", one(`"id": "` + strings.Repeat("a", 129) + `", "file": "a.txt", "price": "EUR:1.00"`), ok, nil, "at most 128"},
		{"twice", `{"products": [{"id": "a", "file": "a.txt", "price": "EUR:1.00"}, {"id": "a", "file": "a.txt", "price": "EUR:2.00"}]}`, ok, nil, "used twice"},
		{"no price", one(`"id": "a", "file": "a.txt"`), ok, nil, "want a positive"},
		{"zero price", one(`"id": "a", "file": "a.txt", "price": "EUR:0.00"`), ok, nil, "want a positive"},
		{"bad price", one(`"id": "a", "file": "a.txt", "price": "1 euro"`), ok, nil, "want a positive"},
		{"no file", one(`"id": "a", "price": "EUR:1.00"`), ok, nil, "no file"},
		{"missing file", one(`"id": "a", "file": "b.txt", "price": "EUR:1.00"`), ok, nil, "no such file"},
		{"escape", one(`"id": "a", "file": "../a.txt", "price": "EUR:1.00"`), ok, nil, "relative path inside"},
		{"absolute", one(`"id": "a", "file": "` + filepath.Join(outside, "secret") + `", "price": "EUR:1.00"`), ok, nil, "relative path inside"},
		{"symlink out", one(`"id": "a", "file": "link", "price": "EUR:1.00"`), ok, func(dir string) {
			os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link"))
		}, "outside the catalogue"},
		{"directory", one(`"id": "a", "file": "sub", "price": "EUR:1.00"`), map[string]string{"sub/x": "x"}, nil, "not a regular file"},
		{"too big", one(`"id": "a", "file": "big", "price": "EUR:1.00"`), ok, func(dir string) {
			f, _ := os.Create(filepath.Join(dir, "big"))
			f.Truncate(MaxProductSize + 1)
			f.Close()
		}, "at most"},
		{"description", one(`"id": "a", "file": "a.txt", "price": "EUR:1.00", "description": "` + strings.Repeat("d", MaxDescriptionLen+1) + `"`), ok, nil, "description"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeCatalogue(t, tc.js, tc.files)
			if tc.setup != nil {
				tc.setup(dir)
			}
			_, err := LoadCatalogue(dir)
			if !errors.Is(err, ErrCatalogue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrCatalogue with %q", err, tc.want)
			}
		})
	}
}

// directBank is the bank's real public service called in-process, counting
// the endorsements it receives; tamper, if set, alters its receipts;
// depositsDown fails deposits before they reach the bank.
type directBank struct {
	pb.BankClient // unused methods panic
	srv           pb.BankServer
	submits       atomic.Int32
	getKeys       atomic.Int32
	depositStatus atomic.Int32
	loseAnswers   atomic.Bool
	checksDown    atomic.Bool // SubmitCheck fails before reaching the bank
	statusDown    atomic.Bool // CheckStatus fails before reaching the bank
	depositsDown  atomic.Bool
	tamper        func(*pb.CheckResult)
}

func (d *directBank) GetKeys(ctx context.Context, in *pb.GetKeysRequest, _ ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	d.getKeys.Add(1)
	return d.srv.GetKeys(ctx, in)
}

func (d *directBank) SubmitCheck(ctx context.Context, in *pb.SubmitCheckRequest, _ ...grpc.CallOption) (*pb.CheckResult, error) {
	d.submits.Add(1)
	if d.checksDown.Load() {
		return nil, status.Error(codes.Unavailable, "connection refused (simulated)")
	}
	r, err := d.srv.SubmitCheck(ctx, in)
	if err == nil && d.loseAnswers.Load() {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	if err == nil && d.tamper != nil {
		d.tamper(r)
	}
	return r, err
}

func (d *directBank) Deposit(ctx context.Context, in *pb.DepositRequest, _ ...grpc.CallOption) (*pb.DepositResponse, error) {
	if d.depositsDown.Load() {
		return nil, status.Error(codes.Unavailable, "connection refused (simulated)")
	}
	return d.srv.Deposit(ctx, in)
}

func (d *directBank) DepositStatus(ctx context.Context, in *pb.DepositStatusRequest, _ ...grpc.CallOption) (*pb.DepositResponse, error) {
	d.depositStatus.Add(1)
	return d.srv.DepositStatus(ctx, in)
}

func (d *directBank) Refund(ctx context.Context, in *pb.RefundRequest, _ ...grpc.CallOption) (*pb.RefundResponse, error) {
	return d.srv.Refund(ctx, in)
}

func (d *directBank) RefundReceipts(ctx context.Context, in *pb.RefundReceiptsRequest, _ ...grpc.CallOption) (*pb.RefundReceiptsResponse, error) {
	return d.srv.RefundReceipts(ctx, in)
}

func (d *directBank) CheckStatus(ctx context.Context, in *pb.CheckStatusRequest, _ ...grpc.CallOption) (*pb.CheckResult, error) {
	if d.statusDown.Load() {
		return nil, status.Error(codes.Unavailable, "connection refused (simulated)")
	}
	return d.srv.CheckStatus(ctx, in)
}

var (
	testKeysOnce atomic.Pointer[bank.Keys]
)

func bankKeys(t *testing.T) *bank.Keys {
	t.Helper()
	if k := testKeysOnce.Load(); k != nil {
		return k
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.MustParseAmount("EUR:1.00"), Cipher: ecash.CipherCS},
	}}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testKeysOnce.Store(k)
	return k
}

type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// shop is a merchant with a catalogue on an in-process bank, and a funded
// customer.
type shop struct {
	t        *testing.T
	clock    *testClock
	bank     *bank.Bank
	bankc    *directBank
	logc     *logLink
	m        *Merchant
	dir      string
	fs       vfs.FS
	cat      string
	account  uint64
	custKey  ed25519.PrivateKey
	custAcct uint64
	// transcript, if set, takes the till's transcript from the next open.
	transcript io.Writer
}

func newShop(t *testing.T) *shop { return newShopWith(t, nil) }

// newShopWith is newShop on a bank whose store wrap (if not nil) wraps.
func newShopWith(t *testing.T, wrap func(bank.Store) bank.Store) *shop {
	t.Helper()
	return newShopOn(t, bankKeys(t), wrap)
}

// logLink is the till's link to the bank's audit log, which a test can
// point at a restarted bank.
type logLink struct{ pb.AuditLogClient }

// newShopOn is newShopWith on a bank with keys k.
func newShopOn(t *testing.T, k *bank.Keys, wrap func(bank.Store) bank.Store) *shop {
	t.Helper()
	s := &shop{t: t, clock: &testClock{}, fs: vfs.NewCrashableMem()}
	s.clock.ns.Store(time.Now().UnixNano())
	ps, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	var store bank.Store = ps
	if wrap != nil {
		store = wrap(store)
	}
	s.bank = bank.New(store, k, s.clock.now, nil)
	if err := s.bank.PublishKeySet(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.bankc = &directBank{srv: s.bank.PublicServer()}
	s.logc = &logLink{serveLog(t, s.bank)}
	s.dir = t.TempDir()
	pub, err := Init(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if s.account, err = s.bank.OpenAccount(ctx, "shop", pub, true); err != nil {
		t.Fatal(err)
	}
	var cpub ed25519.PublicKey
	cpub, s.custKey, _ = ed25519.GenerateKey(rand.Reader)
	if s.custAcct, err = s.bank.OpenAccount(ctx, "customer", cpub, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.bank.Credit(ctx, s.custAcct, ecash.MustParseAmount("EUR:20.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	s.cat = writeCatalogue(t, `{"products": [
		{"id": "song", "file": "song.ogg", "price": "EUR:1.50", "description": "a song"},
		{"id": "film", "file": "film.mkv", "price": "EUR:7.00"}]}`,
		map[string]string{"song.ogg": "la la la", "film.mkv": "moving pictures"})
	s.open()
	return s
}

// recordTranscript reopens the till writing its transcript to the
// buffer it returns.
func (s *shop) recordTranscript() *bytes.Buffer {
	tr := new(bytes.Buffer)
	s.transcript = tr
	s.m.Close()
	s.open()
	return tr
}

func (s *shop) open() {
	m, err := Open(context.Background(), Config{Dir: s.dir, Account: s.account, Bank: s.bankc, AuditLog: s.logc, Now: s.clock.now, FS: s.fs, Catalogue: s.cat, Transcript: s.transcript})
	if err != nil {
		s.t.Fatal(err)
	}
	s.m = m
	s.t.Cleanup(func() { m.Close() })
}

// powerLoss is a power loss and a restart of the merchant, which finds
// on its store what it had written with a sync.
func (s *shop) powerLoss() {
	crashed := s.fs.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{})
	s.m.Close()
	s.fs = crashed
	s.open()
}

func (s *shop) customerPub() ed25519.PublicKey { return s.custKey.Public().(ed25519.PublicKey) }

// offer runs steps 1-4 for product as the customer.
func (s *shop) offer(product string) (*echeck.PriceRequest, *echeck.Quote, *echeck.Delivery) {
	s.t.Helper()
	req := &echeck.PriceRequest{Customer: s.customerPub(), ProductID: product, PRD: []byte("format=ogg"), Bid: ecash.Amount{Currency: "EUR"}}
	rand.Read(req.TID[:])
	rawQ, err := s.m.Quote(req.Encode())
	if err != nil {
		s.t.Fatal(err)
	}
	q, err := echeck.DecodeQuote(rawQ)
	if err != nil {
		s.t.Fatal(err)
	}
	rawD, err := s.m.GetGoods(context.Background(), rawQ)
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := echeck.DecodeDelivery(rawD)
	if err != nil {
		s.t.Fatal(err)
	}
	return req, q, d
}

// sign signs epo as the customer (with whatever fields it holds).
func (s *shop) sign(epo echeck.EPO) []byte {
	s.t.Helper()
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
	priv := echeck.EPOPrivate{Account: s.custAcct, Memo: "test"}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	rand.Read(priv.Nonce[:])
	ks, _ := s.bank.KeySet()
	signed, err := echeck.NewSignedEPO(epo, priv, ks.HPKEPub, s.custKey)
	if err != nil {
		s.t.Fatal(err)
	}
	return signed.Encode()
}

func (s *shop) balance(id uint64) int64 {
	s.t.Helper()
	a, err := s.bank.Store().Account(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return a.Balance
}

func TestQuote(t *testing.T) {
	s := newShop(t)
	req, q, _ := s.offer("song")
	if err := q.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := q.CheckRequest(req, s.clock.now()); err != nil {
		t.Fatal(err)
	}
	if q.Price != ecash.MustParseAmount("EUR:1.50") || q.MerchantAccount != s.account || !q.MerchantPub.Equal(s.m.PublicKey()) {
		t.Fatalf("quote %+v", q)
	}
	if got := q.ExpiresAt.Sub(s.clock.now()); got < QuoteTTL-time.Second || got > QuoteTTL {
		t.Fatalf("quote valid for %s", got)
	}
	bad := &echeck.PriceRequest{Customer: s.customerPub(), ProductID: "nothing", Bid: ecash.Amount{Currency: "EUR"}}
	if _, err := s.m.Quote(bad.Encode()); !errors.Is(err, ErrNoProduct) {
		t.Fatalf("unknown product: %v", err)
	}
	bad = &echeck.PriceRequest{Customer: s.customerPub(), ProductID: "song", Bid: ecash.MustParseAmount("USD:1.00")}
	if _, err := s.m.Quote(bad.Encode()); !errors.Is(err, ecash.ErrCurrencyMismatch) {
		t.Fatalf("bid in USD: %v", err)
	}
	if _, err := s.m.Quote([]byte("junk")); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("junk: %v", err)
	}
	resp, err := s.m.PublicServer().ListProducts(context.Background(), &pb.ListProductsRequest{})
	if err != nil || len(resp.Products) != 2 || resp.Products[1].Price != "EUR:7.00" || resp.MerchantAccount != s.account {
		t.Fatalf("ListProducts: %v %v", err, resp)
	}
}

func TestGetGoods(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	req, q, d := s.offer("song")
	if err := d.Check(); err != nil || d.TID != req.TID || d.EPOID.Merchant != s.account {
		t.Fatalf("delivery: %v %+v", err, d.EPOID)
	}
	// The stored K opens the delivery and matches its commitment.
	sl, err := s.m.loadSale(d.EPOID)
	if err != nil {
		t.Fatal(err)
	}
	if err := echeck.CheckKey(sl.Key, d.KeyCommit); err != nil {
		t.Fatal(err)
	}
	if g, err := echeck.DecryptGoods(sl.Key, d.EPOID, d.Ciphertext); err != nil || string(g) != "la la la" {
		t.Fatalf("goods %q %v", g, err)
	}

	// A quote signed by someone else, or altered, is refused.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged := *q
	forged.Sign(other)
	if _, err := s.m.GetGoods(ctx, forged.Encode()); !errors.Is(err, echeck.ErrMismatch) {
		t.Fatalf("foreign quote: %v", err)
	}
	altered := *q
	altered.Price = ecash.MustParseAmount("EUR:0.01")
	if _, err := s.m.GetGoods(ctx, altered.Encode()); !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("altered quote: %v", err)
	}
	// EPOIDs are unique, also across a restart (serials resume after the
	// reserved block).
	seen := map[[24]byte]bool{d.EPOID.Key(): true}
	for range 3 {
		_, _, d := s.offer("film")
		if seen[d.EPOID.Key()] {
			t.Fatalf("EPOID %s twice", d.EPOID)
		}
		seen[d.EPOID.Key()] = true
	}
	s.m.Close()
	s.open()
	_, _, d2 := s.offer("song")
	if seen[d2.EPOID.Key()] || d2.EPOID.Serial <= d.EPOID.Serial {
		t.Fatalf("EPOID %s after restart", d2.EPOID)
	}
	// An expired quote is refused.
	rawQ := q.Encode()
	s.clock.add(QuoteTTL)
	if _, err := s.m.GetGoods(ctx, rawQ); !errors.Is(err, echeck.ErrExpired) {
		t.Fatalf("expired quote: %v", err)
	}
}

// TestSubmitEPORefusesMismatch: an EPO that is not exactly what the till
// quoted and delivered is refused before it reaches the bank, even though
// the customer signed it.
func TestSubmitEPORefusesMismatch(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("song")
	good := echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute))
	_, q2, d2 := s.offer("film")
	otherKey, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name   string
		change func(e *echeck.EPO)
		want   error
	}{
		{"price", func(e *echeck.EPO) { e.Price = ecash.MustParseAmount("EUR:0.01") }, echeck.ErrMismatch},
		{"product", func(e *echeck.EPO) { e.ProductID = "film" }, echeck.ErrMismatch},
		{"goods hash", func(e *echeck.EPO) { e.GoodsHash[0] ^= 1 }, echeck.ErrMismatch},
		{"key commitment", func(e *echeck.EPO) { e.KeyCommit = d2.KeyCommit }, echeck.ErrMismatch},
		{"PRD hash", func(e *echeck.EPO) { e.PRDHash[0] ^= 1 }, echeck.ErrMismatch},
		{"EPOID of another sale", func(e *echeck.EPO) { e.EPOID = d2.EPOID }, echeck.ErrMismatch},
		{"EPOID never delivered", func(e *echeck.EPO) { e.EPOID.Serial += 1000 }, ErrNoSale},
		{"merchant account", func(e *echeck.EPO) { e.MerchantAccount++ }, echeck.ErrMismatch},
		{"merchant key", func(e *echeck.EPO) { e.MerchantPub = otherKey }, echeck.ErrMismatch},
		{"currency", func(e *echeck.EPO) { e.Price = ecash.MustParseAmount("USD:1.50") }, ecash.ErrCurrencyMismatch},
		{"a check", func(e *echeck.EPO) {
			e.Kind, e.GoodsHash, e.KeyCommit, e.PRDHash = echeck.KindCheck, ecash.Hash{}, ecash.Hash{}, ecash.Hash{}
		}, echeck.ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := good
			tc.change(&e)
			if _, err := s.m.SubmitEPO(ctx, s.sign(e)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Another customer's EPO for our customer's sale.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	e := good
	e.Customer = stranger.Public().(ed25519.PublicKey)
	reply, _ := ecdh.X25519().GenerateKey(rand.Reader)
	priv := echeck.EPOPrivate{Account: s.custAcct}
	copy(priv.ReplyKey[:], reply.PublicKey().Bytes())
	ks, _ := s.bank.KeySet()
	signed, err := echeck.NewSignedEPO(e, priv, ks.HPKEPub, stranger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.SubmitEPO(ctx, signed.Encode()); !errors.Is(err, echeck.ErrMismatch) {
		t.Fatalf("stranger: %v", err)
	}
	// A broken customer signature.
	raw := s.sign(good)
	raw[len(raw)-1] ^= 1
	if _, err := s.m.SubmitEPO(ctx, raw); !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	// An expired EPO.
	short := echeck.NewGoodsEPO(s.customerPub(), q2, d2, s.clock.now().Add(time.Minute))
	rawShort := s.sign(short)
	s.clock.add(time.Minute)
	if _, err := s.m.SubmitEPO(ctx, rawShort); !errors.Is(err, echeck.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if n := s.bankc.submits.Load(); n != 0 {
		t.Fatalf("%d endorsements reached the bank", n)
	}
	if s.balance(s.custAcct) != 2000 || s.balance(s.account) != 0 {
		t.Fatal("money moved")
	}
}

func TestSubmitEPO(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("song")
	epo := echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute))
	raw := s.sign(epo)
	a, err := s.m.SubmitEPO(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if a.Receipt.Decision != echeck.Approved || len(a.CustomerBlock) == 0 {
		t.Fatalf("receipt %+v", a.Receipt)
	}
	signed, _ := echeck.DecodeSignedEPO(raw)
	if g, err := a.Receipt.OpenGoods(a.Receipt.SignerPub, signed, d.Ciphertext); err != nil || string(g) != "la la la" {
		t.Fatalf("goods %q %v", g, err)
	}
	// Re-submitted, even after expiry: forwarded again, the same receipt,
	// money moved once.
	s.clock.add(time.Hour)
	a2, err := s.m.SubmitEPO(ctx, raw)
	if err != nil || string(a2.RawReceipt) != string(a.RawReceipt) {
		t.Fatalf("re-submission: %v", err)
	}
	if s.bankc.submits.Load() != 2 || s.balance(s.custAcct) != 2000-150 || s.balance(s.account) != 150 {
		t.Fatalf("submits %d, balances %d %d", s.bankc.submits.Load(), s.balance(s.custAcct), s.balance(s.account))
	}
	// A different EPO under the same EPOID is refused by the till itself.
	other := epo
	other.ExpiresAt = other.ExpiresAt.Add(time.Minute)
	if _, err := s.m.SubmitEPO(ctx, s.sign(other)); !errors.Is(err, ErrSaleConflict) {
		t.Fatalf("conflict: %v", err)
	}
	st, err := s.m.SaleStatus(ctx, d.EPOID)
	if err != nil || st.State != StateApproved || !st.FromBank || st.Receipt == nil || st.ProductID != "song" {
		t.Fatalf("status %v %+v", err, st)
	}
}

// TestSubmitEPOAnswerLost: the bank commits but its answer never reaches
// the till (a crash after endorsing looks the same). The till's status query
// learns and stores the receipt; the customer's re-submission gets it too.
func TestSubmitEPOAnswerLost(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("film")
	raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
	s.bankc.loseAnswers.Store(true)
	if _, err := s.m.SubmitEPO(ctx, raw); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
	sl, _ := s.m.loadSale(d.EPOID)
	if sl.Endorsement == nil || sl.Receipt != nil {
		t.Fatal("endorsement not stored before sending")
	}
	s.m.Close()
	s.open()
	st, err := s.m.SaleStatus(ctx, d.EPOID)
	if err != nil || st.State != StateApproved {
		t.Fatalf("status %v %+v", err, st)
	}
	if sl, _ := s.m.loadSale(d.EPOID); sl.Receipt == nil {
		t.Fatal("receipt from the status query not stored")
	}
	s.bankc.loseAnswers.Store(false)
	if _, err := s.m.SubmitEPO(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if s.balance(s.custAcct) != 2000-700 {
		t.Fatal("charged twice")
	}
}

func TestSubmitEPOBadReceipt(t *testing.T) {
	s := newShop(t)
	_, q, d := s.offer("song")
	s.bankc.tamper = func(r *pb.CheckResult) { r.Receipt[len(r.Receipt)-1] ^= 1 }
	_, err := s.m.SubmitEPO(context.Background(), s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour))))
	if !errors.Is(err, ErrBadBankAnswer) {
		t.Fatalf("got %v", err)
	}
	if st := s.m.toStatus(context.Background(), err); status.Code(st) != codes.Unavailable {
		t.Fatalf("code %v", status.Code(st))
	}
}

func TestWriteCheck(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	now := s.clock.now()
	id, err := echeck.NewCheckEPOID(rand.Reader, s.account, now)
	if err != nil {
		t.Fatal(err)
	}
	check := echeck.EPO{
		Kind: echeck.KindCheck, Customer: s.customerPub(), ProductID: "invoice 7", Price: ecash.MustParseAmount("EUR:5.00"),
		MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: now.Add(time.Hour),
	}
	raw := s.sign(check)
	if _, err := s.m.SubmitEPO(ctx, raw); !errors.Is(err, echeck.ErrMismatch) {
		t.Fatalf("check through SubmitEPO: %v", err)
	}
	a, err := s.m.WriteCheck(ctx, raw)
	if err != nil || a.Receipt.Decision != echeck.Approved || a.Receipt.Kind != echeck.KindCheck {
		t.Fatalf("check: %v", err)
	}
	a2, err := s.m.WriteCheck(ctx, raw)
	if err != nil || string(a2.RawReceipt) != string(a.RawReceipt) {
		t.Fatalf("re-submitted check: %v", err)
	}
	if s.balance(s.custAcct) != 1500 || s.balance(s.account) != 500 {
		t.Fatal("balances")
	}
	// A check with a till serial (top bit clear) is refused: it could
	// collide with a sale.
	bad := check
	bad.EPOID = echeck.NewEPOID(s.account, now, 5)
	if _, err := s.m.WriteCheck(ctx, s.sign(bad)); !errors.Is(err, echeck.ErrMismatch) {
		t.Fatalf("till serial: %v", err)
	}
	// A goods EPO through WriteCheck is refused.
	_, q, d := s.offer("song")
	if _, err := s.m.WriteCheck(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, now.Add(time.Hour)))); !errors.Is(err, echeck.ErrMismatch) {
		t.Fatalf("goods through WriteCheck: %v", err)
	}
	// Over the balance: a signed decline, forwarded.
	big := check
	big.EPOID, _ = echeck.NewCheckEPOID(rand.Reader, s.account, now)
	big.Price = ecash.MustParseAmount("EUR:500.00")
	a3, err := s.m.WriteCheck(ctx, s.sign(big))
	if err != nil || a3.Receipt.Decision != echeck.Declined || a3.Receipt.Reason != echeck.ReasonInsufficientFunds {
		t.Fatalf("decline: %v", err)
	}
	st, err := s.m.SaleStatus(ctx, big.EPOID)
	if err != nil || st.State != StateDeclined || st.Kind != echeck.KindCheck {
		t.Fatalf("status %v %+v", err, st)
	}
}

func TestSaleStatusUnknown(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, _, d := s.offer("song")
	st, err := s.m.SaleStatus(ctx, d.EPOID)
	if err != nil || st.State != StateDelivered || st.FromBank || !st.Local {
		t.Fatalf("delivered: %v %+v", err, st)
	}
	st, err = s.m.SaleStatus(ctx, echeck.NewEPOID(s.account, s.clock.now(), 99999))
	if err != nil || st.State != StateUnknown || st.Local {
		t.Fatalf("unknown: %v %+v", err, st)
	}
	resp, err := s.m.AdminServer().SaleStatus(ctx, &pb.SaleStatusRequest{Epoid: d.EPOID.String()})
	if err != nil || resp.State != StateDelivered || resp.Kind != "goods" || resp.Price != "EUR:1.50" {
		t.Fatalf("admin: %v %v", err, resp)
	}
	if _, err := s.m.AdminServer().SaleStatus(ctx, &pb.SaleStatusRequest{Epoid: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad EPOID: %v", err)
	}
}

func TestOpenRefusesForeignCurrency(t *testing.T) {
	s := newShop(t)
	s.m.Close()
	cat := writeCatalogue(t, `{"products": [{"id": "a", "file": "a", "price": "USD:1.00"}]}`, map[string]string{"a": "a"})
	_, err := Open(context.Background(), Config{Dir: s.dir, Account: s.account, Bank: s.bankc, FS: s.fs, Catalogue: cat})
	if !errors.Is(err, ErrCatalogue) || !strings.Contains(err.Error(), "USD") {
		t.Fatalf("got %v", err)
	}
}
