package merchant

// A client's retry of a request whose answer it lost, refused for good by
// a bank replica (or the bank in-process) while the original still sits in
// the commit pipeline, the original committing afterwards (review s25,
// bank/retry_inflight_defect_test.go shows the bank side). These tests run
// the merchant over real gRPC against two banks on one ledger: the first
// holds the original's commit, the second, whose clock is further on,
// refuses the retry.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// holdStore holds the first Deposit or Refund commit after armed is set
// to its name, until release is closed; arrived is closed once it is held.
type holdStore struct {
	bank.Store
	armed            atomic.Pointer[string]
	once             sync.Once
	arrived, release chan struct{}
}

func (s *holdStore) hold(op string) {
	if a := s.armed.Load(); a != nil && *a == op {
		s.once.Do(func() {
			close(s.arrived)
			<-s.release
		})
	}
}

func (s *holdStore) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	s.hold("deposit")
	return s.Store.Deposit(ctx, op)
}

func (s *holdStore) Refund(ctx context.Context, op bank.RefundOp) ([]byte, error) {
	s.hold("refund")
	return s.Store.Refund(ctx, op)
}

// replicas is the merchant's link to two replicas of one bank, each served
// over loopback gRPC. Until the answer of the armed deposit or refund is
// lost, every call goes to the first; that call is left committing there
// (held), the merchant told the connection broke, and every later call
// goes to the second (later), whose clock is further on.
type replicas struct {
	pb.BankClient // the first replica
	later         pb.BankClient
	hs            *holdStore
	switched      atomic.Bool
	original      chan error   // the held call's outcome
	refunds       atomic.Int32 // refunds sent
}

func (r *replicas) to() pb.BankClient {
	if r.switched.Load() {
		return r.later
	}
	return r.BankClient
}

// lose sends call to the first replica, where its commit is held, and
// answers as a connection lost.
func (r *replicas) lose(call func() error) error {
	go func() { r.original <- call() }()
	<-r.hs.arrived
	r.switched.Store(true)
	return status.Error(codes.Unavailable, "connection reset (simulated)")
}

func (r *replicas) armed(op string) bool {
	a := r.hs.armed.Load()
	return a != nil && *a == op && !r.switched.Load()
}

func (r *replicas) Deposit(ctx context.Context, in *pb.DepositRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	if r.armed("deposit") {
		return nil, r.lose(func() error { _, err := r.BankClient.Deposit(context.Background(), in); return err })
	}
	return r.to().Deposit(ctx, in, o...)
}

func (r *replicas) Refund(ctx context.Context, in *pb.RefundRequest, o ...grpc.CallOption) (*pb.RefundResponse, error) {
	r.refunds.Add(1)
	if r.armed("refund") {
		return nil, r.lose(func() error { _, err := r.BankClient.Refund(context.Background(), in); return err })
	}
	return r.to().Refund(ctx, in, o...)
}

func (r *replicas) DepositStatus(ctx context.Context, in *pb.DepositStatusRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	return r.to().DepositStatus(ctx, in, o...)
}

func (r *replicas) RefundReceipts(ctx context.Context, in *pb.RefundReceiptsRequest, o ...grpc.CallOption) (*pb.RefundReceiptsResponse, error) {
	return r.to().RefundReceipts(ctx, in, o...)
}

// serveBank serves b's public services on loopback and returns a client.
func serveBank(t *testing.T, b *bank.Bank) pb.BankClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	b.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewBankClient(conn)
}

// replicaShop is a shop whose merchant reaches the bank through replicas:
// the shop's bank, its store able to hold a commit, and a second bank on
// the same ledger whose clock reads later(). It returns the link.
func replicaShop(t *testing.T, later func() time.Time) (*shop, *replicas) {
	t.Helper()
	hs := &holdStore{arrived: make(chan struct{}), release: make(chan struct{})}
	s := newShopWith(t, func(st bank.Store) bank.Store { hs.Store = st; return hs })
	second := bank.New(hs.Store, bankKeys(t), later, nil)
	r := &replicas{BankClient: serveBank(t, s.bank), later: serveBank(t, second), hs: hs, original: make(chan error, 1)}
	s.m.Close()
	s.m = s.openOn(r)
	return s, r
}

// openOn opens the shop's merchant store (closed by the caller) with its
// link to the bank through bankc.
func (s *shop) openOn(bankc pb.BankClient) *Merchant {
	s.t.Helper()
	m, err := Open(context.Background(), Config{Dir: s.dir, Account: s.account, Bank: bankc, AuditLog: s.logc, Now: s.clock.now, FS: s.fs, Catalogue: s.cat})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { m.Close() })
	return m
}

// expiringOrder is a replica shop (replicaShop) whose later replica's
// clock reads just past the expiry plus the skew of its one order, paid
// for by a coin: the order and the sealed payment.
func expiringOrder(t *testing.T) (*shop, *replicas, *Order, []byte) {
	t.Helper()
	var expires atomic.Int64
	s, r := replicaShop(t, func() time.Time { return time.Unix(0, expires.Load()).Add(ecash.MaxClockSkew + time.Second) })
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expires.Store(o.ExpiresAt.UnixNano())
	return s, r, o, s.coinPayment(o)
}

// release lets the held original commit and returns its outcome.
func (r *replicas) release() error {
	close(r.hs.release)
	return <-r.original
}

// coinPayment withdraws a coin of the bank's one denomination from the
// customer's account and pays order o with it: the sealed payment.
func (s *shop) coinPayment(o *Order) []byte {
	s.t.Helper()
	return s.coinPayments(o)[0]
}

// coinPayments withdraws one coin and pays each of orders with it: the
// sealed payments, all but the first committed spending a coin spent.
func (s *shop) coinPayments(orders ...*Order) [][]byte {
	s.t.Helper()
	ctx := context.Background()
	d := bankKeys(s.t).Denoms[0]
	seed := make([]byte, 32)
	rand.Read(seed)
	ps, err := ecash.DerivePlanchet(seed, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	var prepared []byte
	if r := ps.PrepareRequest(d.Denomination); r != nil {
		if prepared, err = d.Private.Prepare(r); err != nil {
			s.t.Fatal(err)
		}
	}
	p, st, err := ps.Blind(d.Denomination, prepared)
	if err != nil {
		s.t.Fatal(err)
	}
	ks, _ := s.bank.KeySet()
	w := &ecash.WithdrawRequest{Account: s.custAcct, CreatedAt: s.clock.now(), Planchets: []ecash.Planchet{p}}
	rand.Read(w.Nonce[:])
	amount, err := ks.WithdrawAmount(w)
	if err != nil {
		s.t.Fatal(err)
	}
	sigs, err := s.bank.Withdraw(ctx, w.Body(), ecash.SignWithdraw(s.custKey, w, amount))
	if err != nil {
		s.t.Fatal(err)
	}
	sig, err := st.Unblind(sigs[0])
	if err != nil {
		s.t.Fatal(err)
	}
	coin := ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}
	var out [][]byte
	for _, o := range orders {
		pr, err := ecash.DecodePaymentRequest(o.Request)
		if err != nil {
			s.t.Fatal(err)
		}
		pay, err := ecash.NewPayment(pr, []ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{d.Value}, s.clock.now())
		if err != nil {
			s.t.Fatal(err)
		}
		sealed, err := ecash.SealPayment(ks.HPKEPub, pr, pay)
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, sealed)
	}
	return out
}

// conserved checks the merchant's records against its account at the
// bank: what its paid orders brought in, less its refunds with their fees,
// is its balance (it started at zero, and nothing else moved it).
func (s *shop) conserved(orders ...*Order) {
	s.t.Helper()
	var in, out uint64
	for _, o := range orders {
		o, err := s.m.Order(o.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		if o.Receipt != nil {
			in += o.Amount.Value
		}
		recs, err := s.m.refunds(o.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, r := range recs {
			if r.Receipt == nil {
				s.t.Errorf("refund %d of order %s still pending", r.ID, o.ID)
				continue
			}
			rc, err := ecash.DecodeRefundReceipt(r.Receipt)
			if err != nil {
				s.t.Fatal(err)
			}
			out += rc.Total.Value + rc.Fee.Value
		}
	}
	if got, want := s.balance(s.account), int64(in)-int64(out); got != want {
		s.t.Errorf("the merchant's balance at the bank is %d; its records (paid orders %d, refunds %d) say %d", got, in, out, want)
	}
}

// TestDepositRetryRefusedWhileOriginalCommits: the merchant's deposit of a
// payment is committing (held) when its answer is lost; DepositStatus
// finds nothing yet, so the mark stays. The wallet sends the same sealed
// payment again, and the replica it reaches, its clock past the request's
// expiry and the skew, refuses it (ErrPaymentExpired, FailedPrecondition).
// The mark was there before that call: an earlier send may still commit.
// So the mark stays, the wallet is told the payment is pending (not a
// refusal), and once the original commits Reconcile records the order
// paid. Without the fix Pay deleted the mark (the same key: the same
// sealed bytes), Reconcile never asked, and the order stayed unpaid with
// the merchant credited.
func TestDepositRetryRefusedWhileOriginalCommits(t *testing.T) {
	ctx := context.Background()
	s, r, o, sealed := expiringOrder(t)
	pay := s.m.PublicServer()

	deposit := "deposit"
	r.hs.armed.Store(&deposit)
	if _, err := pay.Pay(ctx, &pb.PayRequest{OrderId: o.ID, SealedPayment: sealed}); status.Code(err) != codes.Unavailable {
		t.Fatalf("the payment whose deposit's answer was lost: %v, want Unavailable", err)
	}
	if !s.marked(o.ID) {
		t.Fatal("the deposit whose answer was lost is not in flight")
	}
	_, err := pay.Pay(ctx, &pb.PayRequest{OrderId: o.ID, SealedPayment: sealed})
	t.Logf("the wallet's retry, refused by the replica past the expiry: %v", err)
	if bank.Definitive(err) {
		t.Errorf("the retry's answer is a refusal (%v): the wallet takes it that nothing was paid", status.Code(err))
	}
	if !s.marked(o.ID) {
		t.Error("the retry's refusal dropped the deposit in flight")
	}
	if err := r.release(); err != nil {
		t.Fatalf("the original deposit: %v", err)
	}
	paid, err := s.m.Reconcile(ctx)
	if err != nil || paid != 1 {
		t.Errorf("reconcile once the original committed: %d paid, %v; want the order paid", paid, err)
	}
	if st := s.orderStatus(o.ID); st != "paid" || s.marked(o.ID) {
		t.Errorf("order %s, in flight %v; want paid, settled", st, s.marked(o.ID))
	}
	s.conserved(o)
}

// TestRefundRetryRefusedWhileOriginalCommits: the merchant's refund of a
// paid order is committing (held) when its answer is lost, and stays
// pending. The order's next refund sends it again to a replica whose clock
// is at the paying coin's deposit-window end, which refuses it
// (ErrRefundExceeds: the coin takes no refund). It was sent before, so it
// stays pending (ErrRefundInFlight); the original commits; the next
// refund completes it from the bank's record. Without the fix the refusal
// deleted the record: the merchant's money went, its records did not show
// it, and the number was free for another refund.
func TestRefundRetryRefusedWhileOriginalCommits(t *testing.T) {
	ctx := context.Background()
	s, r := replicaShop(t, func() time.Time { return bankKeys(t).Denoms[0].DepositEnd })
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Pay(ctx, o.ID, s.coinPayment(o)); err != nil {
		t.Fatal(err)
	}
	s.conserved(o)
	amount := ecash.MustParseAmount("EUR:1.00")

	refund := "refund"
	r.hs.armed.Store(&refund)
	if _, err := s.m.Refund(ctx, o.ID, 0, amount); status.Code(err) != codes.Unavailable {
		t.Fatalf("the refund whose answer was lost: %v, want Unavailable", err)
	}
	_, err = s.m.Refund(ctx, o.ID, 0, amount)
	t.Logf("the order's next refund, refused by the replica at the coin's deposit end: %v", err)
	if !errors.Is(err, ErrRefundInFlight) || bank.Definitive(s.m.toStatus(ctx, err)) {
		t.Errorf("the pending refund's refusal: %v, want ErrRefundInFlight, not a refusal", err)
	}
	if recs, err := s.m.refunds(o.ID); err != nil || len(recs) != 1 || recs[0].Receipt != nil {
		t.Fatalf("after the refusal: %d refunds, %v; want the pending one kept", len(recs), err)
	}
	if err := r.release(); err != nil {
		t.Fatalf("the original refund: %v", err)
	}
	got, err := s.m.Refund(ctx, o.ID, 1, amount)
	if err != nil || got.ID != 1 || got.Total != amount {
		t.Fatalf("refund 1 once the original committed: %+v, %v; want it completed from the bank's record", got, err)
	}
	s.conserved(o)
}

// TestPendingRefundPastSendWindow: a refund whose answer was lost (it
// committed) is, past its send window, not sent again (every send of a
// pending refund is bounded in time, so that its drop is safe): the
// bank's refund receipts of the payment complete it.
func TestPendingRefundPastSendWindow(t *testing.T) {
	ctx := context.Background()
	s, r := replicaShop(t, func() time.Time { return time.Unix(0, 0) }) // never asked: not sent
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Pay(ctx, o.ID, s.coinPayment(o)); err != nil {
		t.Fatal(err)
	}
	amount := ecash.MustParseAmount("EUR:0.40")
	refund := "refund"
	r.hs.armed.Store(&refund)
	if _, err := s.m.Refund(ctx, o.ID, 0, amount); status.Code(err) != codes.Unavailable {
		t.Fatalf("the refund whose answer was lost: %v, want Unavailable", err)
	}
	if err := r.release(); err != nil {
		t.Fatalf("the original refund: %v", err)
	}
	s.clock.add(refundSendWindow + time.Second)
	sent := r.refunds.Load()
	got, err := s.m.Refund(ctx, o.ID, 0, amount)
	if err != nil || got.ID != 1 || got.Total != amount {
		t.Fatalf("the pending refund past its send window: %+v, %v; want it completed from the bank's receipts", got, err)
	}
	if n := r.refunds.Load() - sent; n != 0 {
		t.Errorf("the pending refund past its send window was sent %d times", n)
	}
	s.conserved(o)
}

// racingSends has the merchant's first deposit of a payment refused by the
// replica past the expiry, but only once gate is closed; every later call
// goes through r. entered is closed once the first deposit is sent.
type racingSends struct {
	*replicas
	calls         atomic.Int32
	entered, gate chan struct{}
}

func (c *racingSends) Deposit(ctx context.Context, in *pb.DepositRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	if c.calls.Add(1) == 1 {
		close(c.entered)
		<-c.gate
		return c.later.Deposit(ctx, in, o...)
	}
	return c.replicas.Deposit(ctx, in, o...)
}

// TestDepositFirstSendRefusedWhileRetryCommits: two Pay calls of the same
// sealed payment overlap (the wallet gave up on the first and sent again).
// The first send is slow to be refused (it reached the replica past the
// expiry); the second, sent meanwhile, is committing (held) when its
// answer is lost, and its mark is written again. The first send's refusal
// then comes: it was the first send, but not the only one, so it must not
// drop the mark the second's commit needs. Without the fix it did:
// Reconcile never asked, and the order stayed unpaid with the merchant
// credited.
func TestDepositFirstSendRefusedWhileRetryCommits(t *testing.T) {
	ctx := context.Background()
	s, r, o, sealed := expiringOrder(t)
	c := &racingSends{replicas: r, entered: make(chan struct{}), gate: make(chan struct{})}
	s.m.bank = c
	deposit := "deposit"
	r.hs.armed.Store(&deposit)

	first := make(chan error, 1)
	go func() { _, err := s.m.Pay(ctx, o.ID, sealed); first <- err }()
	<-c.entered
	if _, err := s.m.Pay(ctx, o.ID, sealed); status.Code(err) != codes.Unavailable {
		t.Fatalf("the second send, its answer lost: %v, want Unavailable", err)
	}
	close(c.gate)
	err := <-first
	t.Logf("the first send, refused by the replica past the expiry: %v", err)
	if bank.Definitive(s.m.toStatus(ctx, err)) {
		t.Errorf("the first send's answer is a refusal (%v) while the second may commit", err)
	}
	if !s.marked(o.ID) {
		t.Error("the first send's refusal dropped the deposit in flight of the second")
	}
	if err := r.release(); err != nil {
		t.Fatalf("the second deposit: %v", err)
	}
	if paid, err := s.m.Reconcile(ctx); err != nil || paid != 1 {
		t.Errorf("reconcile once the second committed: %d paid, %v; want the order paid", paid, err)
	}
	s.conserved(o)
}

// lostFirstDeposit is a link to the bank on which the first Deposit is
// lost before it reaches the bank: the merchant learns nothing.
type lostFirstDeposit struct {
	pb.BankClient
	lost atomic.Bool
}

func (l *lostFirstDeposit) Deposit(ctx context.Context, in *pb.DepositRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	if l.lost.CompareAndSwap(false, true) {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return l.BankClient.Deposit(ctx, in, o...)
}

// TestResentPaymentDoubleSpent: a payment's first send is lost on the way
// (its mark stays: it may have reached the bank); its coin is then spent
// paying another order; the wallet sends the first payment again, and the
// bank refuses it as a double spend. That refusal is final (the bank found
// no record of the payment and the coin spent by another, in one step),
// so the wallet gets it with its proof and the mark goes. It used to be
// told "pending" (UNAVAILABLE, the proof dropped), and retried for
// nothing until Reconcile gave the order up.
func TestResentPaymentDoubleSpent(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	s.m.Close()
	s.m = s.openOn(&lostFirstDeposit{BankClient: serveBank(t, s.bank)})
	first, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "first", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "second", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.coinPayments(first, second)
	pay := s.m.PublicServer()
	if _, err := pay.Pay(ctx, &pb.PayRequest{OrderId: first.ID, SealedPayment: sealed[0]}); status.Code(err) != codes.Unavailable {
		t.Fatalf("the payment whose send was lost: %v, want Unavailable", err)
	}
	if !s.marked(first.ID) {
		t.Fatal("the payment whose send was lost is not in flight")
	}
	if _, err := pay.Pay(ctx, &pb.PayRequest{OrderId: second.ID, SealedPayment: sealed[1]}); err != nil {
		t.Fatalf("the coin paying the second order: %v", err)
	}
	_, err = pay.Pay(ctx, &pb.PayRequest{OrderId: first.ID, SealedPayment: sealed[0]})
	if !bank.DoubleSpent(err) || !bank.Definitive(err) {
		t.Fatalf("the first payment sent again, its coin spent: %v (reason %q); want the double spend's refusal", err, bank.Reason(err))
	}
	proof := false
	for _, d := range status.Convert(err).Details() {
		if ds, ok := d.(*pb.DoubleSpendDetail); ok && len(ds.Proof) > 0 {
			proof = true
		}
	}
	if !proof {
		t.Error("the double spend's refusal reached the wallet without its proof")
	}
	if s.marked(first.ID) {
		t.Error("the payment refused as a double spend is still in flight")
	}
	if st := s.orderStatus(first.ID); st == "paid" {
		t.Errorf("the first order is %s", st)
	}
	s.conserved(first, second)
}

// crashOnLost is the replicas' link, which takes a crash clone of the
// merchant's store as the armed deposit's answer is lost: a power loss
// while the deposit is at the bank, before the merchant synced its mark.
type crashOnLost struct {
	*replicas
	crash func()
}

func (c *crashOnLost) Deposit(ctx context.Context, in *pb.DepositRequest, o ...grpc.CallOption) (*pb.DepositResponse, error) {
	armed := c.armed("deposit")
	resp, err := c.replicas.Deposit(ctx, in, o...)
	if armed {
		c.crash()
	}
	return resp, err
}

// TestResendAfterPowerLossWhileOriginalCommits: the merchant loses power
// while a payment's deposit sits in the bank's commit pipeline, and with
// it the deposit's mark, not yet synced. Restarted, it marks the order
// (Open, after a run that did not close cleanly) and asks the bank, which
// has no payment of it yet (Reconcile, as merchantd does at start). The
// wallet sends the same payment again and a replica whose clock is past
// the request's expiry refuses it. That send counted as a first one: the merchant passed
// the refusal on, and the wallet took its coins back while the original
// went on to spend them. The order's mark now makes it a resend: the
// wallet is told the payment is pending, and Reconcile records it paid
// once the original commits.
func TestResendAfterPowerLossWhileOriginalCommits(t *testing.T) {
	ctx := context.Background()
	s, r, o, sealed := expiringOrder(t)
	var crashed vfs.FS
	link := &crashOnLost{replicas: r, crash: func() { crashed = s.fs.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{}) }}
	s.m.Close()
	m := s.openOn(link)
	deposit := "deposit"
	r.hs.armed.Store(&deposit)
	if _, err := m.Pay(ctx, o.ID, sealed); status.Code(err) != codes.Unavailable {
		t.Fatalf("the payment whose deposit's answer was lost: %v, want Unavailable", err)
	}
	m.Close()
	s.fs = crashed // the power loss, taken while the deposit was at the bank
	s.m = s.openOn(link)
	if ok, err := s.m.has(attemptKey(o.ID, sealed)); ok || err != nil {
		t.Fatalf("the deposit's mark survived the power loss (%v): the test needs it lost", err)
	}
	// As merchantd does at start: the bank has no payment of the order yet.
	if paid, err := s.m.Reconcile(ctx); err != nil || paid != 0 {
		t.Fatalf("reconcile at start: %d paid, %v", paid, err)
	}
	// A stranger's junk for the order is refused for what it is, and
	// leaves no mark: no send of those bytes can be committing.
	if _, err := s.m.PublicServer().Pay(ctx, &pb.PayRequest{OrderId: o.ID, SealedPayment: []byte("junk")}); !bank.Definitive(err) || s.stored(attemptKey(o.ID, []byte("junk"))) {
		t.Errorf("junk paying the order after the power loss: %v, its mark kept %v; want a refusal, no mark", err, s.stored(attemptKey(o.ID, []byte("junk"))))
	}
	_, err := s.m.PublicServer().Pay(ctx, &pb.PayRequest{OrderId: o.ID, SealedPayment: sealed})
	if bank.Definitive(err) {
		t.Errorf("the wallet's resend after the power loss, refused by the replica past the expiry: %v, a refusal; want the payment pending", err)
	}
	if err := r.release(); err != nil {
		t.Fatalf("the original deposit: %v", err)
	}
	if paid, err := s.m.Reconcile(ctx); err != nil || paid != 1 {
		t.Errorf("reconcile once the original committed: %d paid, %v; want the order paid", paid, err)
	}
	if st := s.orderStatus(o.ID); st != "paid" {
		t.Errorf("order %s; want paid", st)
	}
	s.conserved(o)
}

// stored reports whether key is in the merchant's store.
func (s *shop) stored(key []byte) bool {
	s.t.Helper()
	ok, err := s.m.has(key)
	if err != nil {
		s.t.Fatal(err)
	}
	return ok
}
