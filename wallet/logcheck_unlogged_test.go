package wallet_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// omittingStore is a bank's store that, while omit is set, commits
// deposits, withdrawals and payment orders without their audit-log entry:
// a bank hiding
// them from the auditor, which answers with a receipt all the same. With
// backdate set too, it dates those receipts then, signed again with
// signing, and a withdrawal's posting (its answer carries no date): a
// bank making an answer it did not log look older than its log.
type omittingStore struct {
	bank.Store
	omit     atomic.Bool
	backdate atomic.Pointer[time.Time]
	signing  ed25519.PrivateKey
}

func (s *omittingStore) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	if s.omit.Load() {
		op.Log = nil
		if at := s.backdate.Load(); at != nil {
			r, err := ecash.DecodeDepositReceipt(op.Receipt)
			if err != nil {
				return nil, err
			}
			r.DepositedAt = *at
			r.Sig = ecash.SignBody(s.signing, r.Body())
			op.Receipt = r.Encode()
		}
	}
	return s.Store.Deposit(ctx, op)
}

func (s *omittingStore) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	if s.omit.Load() {
		op.Log = nil
		if at := s.backdate.Load(); at != nil {
			op.Time = *at
		}
	}
	return s.Store.Withdraw(ctx, op)
}

func (s *omittingStore) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	if s.omit.Load() {
		op.Log = nil
		if at := s.backdate.Load(); at != nil {
			for _, raw := range []*[]byte{&op.Approved, &op.DeclinedFunds, &op.DeclinedLimit, &op.DeclinedReceipt} {
				if len(*raw) == 0 {
					continue
				}
				r, err := echeck.DecodeReceipt(*raw)
				if err != nil {
					return bank.CheckOutcome{}, err
				}
				r.DecidedAt = *at
				r.Sign(s.signing)
				*raw = r.Encode()
			}
		}
	}
	return s.Store.Check(ctx, op)
}

// unloggedBank is a bank over an omittingStore whose log began (its key
// set logged) at began past now, its clock at now past now afterwards,
// and a wallet holding EUR 10 of its coins.
type unloggedBank struct {
	bank  *bank.Bank
	store *omittingStore
	bankc pb.BankClient
	logc  pb.AuditLogClient
	w     *wallet.Wallet
	clock func() time.Time
}

func newUnloggedBank(t *testing.T, began, now time.Duration) *unloggedBank {
	t.Helper()
	ctx := context.Background()
	inner, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	u := &unloggedBank{store: &omittingStore{Store: inner, signing: keys(t).Signing}}
	var offset atomic.Int64
	offset.Store(int64(began))
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	u.clock = clock
	b := bank.New(u.store, keys(t), clock, nil)
	u.bank = b
	if err := b.PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(now))
	conn := serve(t, b.Register)
	u.bankc, u.logc = pb.NewBankClient(conn), pb.NewAuditLogClient(conn)
	if u.w, err = wallet.Create(t.TempDir(), wallet.Options{Now: clock}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.w.Close() })
	id, err := b.OpenAccount(ctx, "customer", u.w.AccountKey(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.w.SetAccount(id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Credit(ctx, id, ecash.MustParseAmount("EUR:10.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := u.w.Withdraw(ctx, u.bankc, ecash.MustParseAmount("EUR:10.00"), nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// deposit returns coins of the wallet to its account: a deposit whose log
// index the wallet learns only from the log (FindEntry), as one paid
// through a merchant.
func (u *unloggedBank) deposit(t *testing.T, omit bool) {
	t.Helper()
	u.store.omit.Store(omit)
	defer u.store.omit.Store(false)
	if _, err := u.w.Return(context.Background(), u.bankc, ecash.MustParseAmount("EUR:1.00")); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyLogUnloggedDeposit: a deposit the bank answered with a receipt
// and never logged is ErrLogMismatch, with the report (the checkpoint
// signed after the answer, which lacks it: the evidence), once the check
// was recorded before the checkpoint was fetched. It was counted waiting
// at every run, for ever.
func TestVerifyLogUnloggedDeposit(t *testing.T) {
	ctx := context.Background()
	u := newUnloggedBank(t, 0, 10*time.Minute)
	u.deposit(t, true)
	rep, err := u.w.VerifyLog(ctx, u.bankc, u.logc)
	if !errors.Is(err, wallet.ErrLogMismatch) || !strings.Contains(err.Error(), "the deposit of payment") {
		t.Fatalf("a deposit the bank did not log: %v; want ErrLogMismatch naming it", err)
	}
	if rep == nil || rep.Signed == nil {
		t.Fatalf("the report: %+v; want the signed checkpoint, the evidence", rep)
	}
	// Reported at every run, not settled by being reported once.
	if _, err := u.w.VerifyLog(ctx, u.bankc, u.logc); !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("again: %v; want ErrLogMismatch", err)
	}
}

// TestVerifyLogLoggedDeposit: the same deposit, logged, is verified.
func TestVerifyLogLoggedDeposit(t *testing.T) {
	ctx := context.Background()
	u := newUnloggedBank(t, 0, 10*time.Minute)
	u.deposit(t, false)
	rep, err := u.w.VerifyLog(ctx, u.bankc, u.logc)
	if err != nil || rep.Waiting != 0 || rep.Verified != 3 { // the key set, the withdrawal and the deposit
		t.Fatalf("a logged deposit: %+v, %v; want it and the key set verified", rep, err)
	}
}

// TestVerifyLogUnloggedDepositUnknowable: an unlogged deposit's check the
// wallet cannot date after the log began waits: recorded by an older
// build (no answer time), answered (by the bank's clock) before the log's
// first entry (as a deposit made before the bank kept a log, answered
// again from its record), or recorded after the checkpoint was fetched.
func TestVerifyLogUnloggedDepositUnknowable(t *testing.T) {
	ctx := context.Background()
	t.Run("older build", func(t *testing.T) {
		u := newUnloggedBank(t, 0, 10*time.Minute)
		u.deposit(t, true)
		if err := wallet.ForgetLogCheckTimes(u.w); err != nil {
			t.Fatal(err)
		}
		if rep, err := u.w.VerifyLog(ctx, u.bankc, u.logc); err != nil || rep.Waiting != 1 {
			t.Fatalf("%+v, %v; want it waiting", rep, err)
		}
	})
	t.Run("before the log began", func(t *testing.T) {
		u := newUnloggedBank(t, 20*time.Minute, 0)
		u.deposit(t, true)
		if rep, err := u.w.VerifyLog(ctx, u.bankc, u.logc); err != nil || rep.Waiting != 1 {
			t.Fatalf("%+v, %v; want it waiting", rep, err)
		}
	})
	t.Run("after the checkpoint", func(t *testing.T) {
		u := newUnloggedBank(t, 0, 10*time.Minute)
		logc := &hookedLog{AuditLogClient: u.logc, after: func() { u.deposit(t, true) }}
		rep, err := u.w.VerifyLog(ctx, u.bankc, logc)
		if err != nil || rep.Waiting != 1 || logc.after != nil {
			t.Fatalf("%+v, %v; want it waiting", rep, err)
		}
		if _, err := u.w.VerifyLog(ctx, u.bankc, u.logc); !errors.Is(err, wallet.ErrLogMismatch) {
			t.Fatalf("the next run: %v; want ErrLogMismatch", err)
		}
	})
}

// shop opens a merchant on the bank, reaching it through bankc and its
// log, on the bank's clock, and serves its public service.
func (u *unloggedBank) shop(t *testing.T, bankc pb.BankClient) (*merchant.Merchant, pb.MerchantClient) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := u.bank.OpenAccount(ctx, "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := merchant.Open(ctx, merchant.Config{Dir: dir, Account: acct, Bank: bankc, AuditLog: u.logc, FS: vfs.NewMem(), Now: u.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, pb.NewMerchantClient(serve(t, func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) }))
}

// backdated are the dates a bank that did not log an answer can put on its
// receipt to make it wait for ever: before its log began, and the epoch,
// where the wallet's record of the answer's time read as one of a build
// that kept none.
var backdated = map[string]time.Time{
	"before the log began": time.Now().Add(-time.Hour).Truncate(time.Millisecond),
	"at the epoch":         time.UnixMilli(0),
}

// wantBackdated fails t unless err is mismatch naming what and both the
// receipt's date (at) and the time it is judged by.
func wantBackdated(t *testing.T, err, mismatch error, what string, at time.Time) {
	t.Helper()
	wantJudgedByRequest(t, err, mismatch, what, "its answer is dated "+at.UTC().Format(time.RFC3339))
}

// wantJudgedByRequest fails t unless err is mismatch naming what as not in
// the log, answered no earlier than its request's time less the skew, and
// saying answer, about the bank's date on it.
func wantJudgedByRequest(t *testing.T, err, mismatch error, what, answer string) {
	t.Helper()
	for _, sub := range []string{what, "is not in its audit log", "at the earliest", answer} {
		if !errors.Is(err, mismatch) || !strings.Contains(err.Error(), sub) {
			t.Fatalf("%v; want a mismatch saying %q", err, sub)
		}
	}
	t.Log(err)
}

// TestVerifyLogBackdatedDeposit: a bank that leaves a deposit out of its
// log cannot make it wait for ever by dating its receipt before the log
// began. No honest bank answers a deposit before its payment request's
// CreatedAt less the clock skew (it refuses one created further ahead of
// its clock), so the request's time bounds the answer's: one made after
// the log began is a mismatch, whatever the receipt says. (An honest
// answer from before the log still waits: TestVerifyLogUnloggedDepositUnknowable.)
func TestVerifyLogBackdatedDeposit(t *testing.T) {
	for name, at := range backdated {
		t.Run(name, func(t *testing.T) {
			u := newUnloggedBank(t, 0, 20*time.Minute)
			u.store.backdate.Store(&at)
			u.deposit(t, true)
			_, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc)
			wantBackdated(t, err, wallet.ErrLogMismatch, "the deposit of payment", at)
		})
	}
}

// TestMerchantVerifyLogBackdatedDeposit: a bank that leaves a merchant's
// deposit out of its log cannot make it wait for ever by dating its
// receipt before the log began: no honest bank answers a deposit before
// the merchant's payment request's CreatedAt less the clock skew (it
// refuses one created further ahead of its clock), so that bounds the
// answer's time. (An honest answer from before the log still waits:
// TestMerchantVerifyLogUnloggedDeposit.)
func TestMerchantVerifyLogBackdatedDeposit(t *testing.T) {
	ctx := context.Background()
	for name, at := range backdated {
		t.Run(name, func(t *testing.T) {
			u := newUnloggedBank(t, 0, 20*time.Minute)
			m, shop := u.shop(t, u.bankc)
			o, err := m.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
			if err != nil {
				t.Fatal(err)
			}
			u.store.backdate.Store(&at)
			u.store.omit.Store(true)
			if _, err := u.w.Pay(ctx, u.bankc, shop, "shop", o.ID, nil); err != nil {
				t.Fatal(err)
			}
			u.store.omit.Store(false)
			_, err = m.VerifyLog(ctx)
			wantBackdated(t, err, logclient.ErrMismatch, "order "+o.ID, at)
		})
	}
}

// fund credits the wallet's account EUR 1 and has the bank leave what it
// does out of its log if omit, until the function returned is called.
func (u *unloggedBank) fund(t *testing.T, omit bool) (done func()) {
	t.Helper()
	acct, err := u.w.Account()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.bank.Credit(context.Background(), acct, ecash.MustParseAmount("EUR:1.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	u.store.omit.Store(omit)
	return func() { u.store.omit.Store(false) }
}

// writeCheck has the wallet write a check for EUR 1 to the merchant
// served by shop, funding its account first; omit leaves its decision
// out of the bank's log.
func (u *unloggedBank) writeCheck(t *testing.T, shop pb.MerchantClient, omit bool) *wallet.Purchase {
	t.Helper()
	defer u.fund(t, omit)()
	p, err := u.w.WriteCheck(context.Background(), u.bankc, shop, ecash.MustParseAmount("EUR:1.00"), "")
	if err != nil || p.State != wallet.PurchaseApproved {
		t.Fatalf("%+v, %v; want the check approved", p, err)
	}
	return p
}

// TestVerifyLogBackdatedPaymentOrder: a payment order the bank decided and
// left out of its log cannot wait for ever by a receipt dated before the
// log began: no honest bank decides one before its EPOID's time less the
// clock skew (it refuses one dated further ahead of its clock).
func TestVerifyLogBackdatedPaymentOrder(t *testing.T) {
	for name, at := range backdated {
		t.Run(name, func(t *testing.T) {
			u := newUnloggedBank(t, 0, 20*time.Minute)
			_, shop := u.shop(t, u.bankc)
			u.store.backdate.Store(&at)
			u.writeCheck(t, shop, true)
			_, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc)
			wantBackdated(t, err, wallet.ErrLogMismatch, "the approval of payment order", at)
		})
	}
}

// TestVerifyLogPaymentOrderBeforeLog: a payment order the bank decided,
// honestly, before its log began (as one made before the bank kept a log,
// answered again from its record) has no entry, and waits.
func TestVerifyLogPaymentOrderBeforeLog(t *testing.T) {
	u := newUnloggedBank(t, 20*time.Minute, 0)
	_, shop := u.shop(t, u.bankc)
	u.writeCheck(t, shop, true)
	if rep, err := u.w.VerifyLog(context.Background(), u.bankc, u.logc); err != nil || rep.Waiting != 1 || rep.Verified != 2 {
		t.Fatalf("%+v, %v; want it waiting (and the key set and the withdrawal verified)", rep, err)
	}
}

// hookedLog runs after once, after the first checkpoint it fetches.
type hookedLog struct {
	pb.AuditLogClient
	after func()
}

func (l *hookedLog) GetCheckpoint(ctx context.Context, in *pb.GetCheckpointRequest, opts ...grpc.CallOption) (*pb.GetCheckpointResponse, error) {
	resp, err := l.AuditLogClient.GetCheckpoint(ctx, in, opts...)
	if f := l.after; err == nil && f != nil {
		l.after = nil
		f()
	}
	return resp, err
}

// TestMerchantVerifyLogUnloggedDeposit: a merchant's deposit the bank
// answered with a receipt and never logged is logclient.ErrMismatch naming
// the order, once paid before the checkpoint was fetched (it was counted
// waiting for ever); a logged one is verified, and one answered before the
// bank's log began waits.
func TestMerchantVerifyLogUnloggedDeposit(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		began, now time.Duration
		omit       bool
	}{
		"unlogged":             {0, 10 * time.Minute, true},
		"logged":               {0, 10 * time.Minute, false},
		"before the log began": {20 * time.Minute, 0, true},
	} {
		t.Run(name, func(t *testing.T) {
			u := newUnloggedBank(t, c.began, c.now)
			m, shop := u.shop(t, u.bankc)
			o, err := m.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
			if err != nil {
				t.Fatal(err)
			}
			u.store.omit.Store(c.omit)
			if _, err := u.w.Pay(ctx, u.bankc, shop, "shop", o.ID, nil); err != nil {
				t.Fatal(err)
			}
			u.store.omit.Store(false)
			rep, err := m.VerifyLog(ctx)
			switch {
			case name == "unlogged":
				if !errors.Is(err, logclient.ErrMismatch) || rep == nil || !strings.Contains(err.Error(), o.ID) {
					t.Fatalf("%v; want logclient.ErrMismatch naming order %s, with the report", err, o.ID)
				}
			case name == "logged":
				if err != nil || rep.Verified != 1 || rep.Waiting != 0 {
					t.Fatalf("%+v, %v; want the deposit verified", rep, err)
				}
			default:
				if err != nil || rep.Waiting != 1 {
					t.Fatalf("%+v, %v; want the deposit waiting", rep, err)
				}
			}
		})
	}
}

// denyingBank answers every DepositStatus "not paid": a bank denying a
// deposit it signed a receipt for.
type denyingBank struct{ pb.BankClient }

func (denyingBank) DepositStatus(context.Context, *pb.DepositStatusRequest, ...grpc.CallOption) (*pb.DepositResponse, error) {
	return nil, status.Error(codes.NotFound, "bank: payment request not paid")
}

// TestMerchantVerifyLogDeniedDeposit: a bank that denies a deposit it
// answered and never logged (DepositStatus NotFound) is reported as one
// that did not log it (logclient.ErrMismatch naming the order): the denial
// stopped every verify-log with a plain error, so a bank could keep the
// merchant from checking anything, that deposit's evidence included.
func TestMerchantVerifyLogDeniedDeposit(t *testing.T) {
	ctx := context.Background()
	u := newUnloggedBank(t, 0, 10*time.Minute)
	m, shop := u.shop(t, denyingBank{u.bankc})
	o, err := m.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
	if err != nil {
		t.Fatal(err)
	}
	u.store.omit.Store(true)
	if _, err := u.w.Pay(ctx, u.bankc, shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	u.store.omit.Store(false)
	rep, err := m.VerifyLog(ctx)
	if !errors.Is(err, logclient.ErrMismatch) || rep == nil || !strings.Contains(err.Error(), o.ID) {
		t.Fatalf("%v; want logclient.ErrMismatch naming order %s, with the report", err, o.ID)
	}
}
