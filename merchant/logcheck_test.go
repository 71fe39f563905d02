package merchant

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// serveLog serves b's public services on loopback and returns its AuditLog
// client.
func serveLog(t *testing.T, b *bank.Bank) pb.AuditLogClient {
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
	return pb.NewAuditLogClient(conn)
}

// lyingStore logs what the bank tells it to, except that, when set, a
// check's entry records another amount (lie 1) or is not logged (lie 2).
type lyingStore struct {
	bank.Store
	lie atomic.Int32
}

func (l *lyingStore) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	switch l.lie.Load() {
	case 1:
		c := op.Log.(auditlog.Check)
		c.Amount.Value--
		op.Log = c
	case 2:
		op.Log = nil
	}
	return l.Store.Check(ctx, op)
}

// newLyingShop is a shop on a bank whose store tells lie (lyingStore).
func newLyingShop(t *testing.T, lie int32) *shop {
	t.Helper()
	ls := &lyingStore{}
	ls.lie.Store(lie)
	return newShopWith(t, func(st bank.Store) bank.Store { ls.Store = st; return ls })
}

// writeCheck has the shop's customer write a check for price.
func (s *shop) writeCheck(price string) *CheckAnswer {
	s.t.Helper()
	a, err := s.m.WriteCheck(context.Background(), s.check(price))
	if err != nil {
		s.t.Fatal(err)
	}
	return a
}

// check is a signed check of the shop's customer for price.
func (s *shop) check(price string) []byte {
	s.t.Helper()
	now := s.clock.now()
	id, err := echeck.NewCheckEPOID(rand.Reader, s.account, now)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.sign(echeck.EPO{
		Kind: echeck.KindCheck, Customer: s.customerPub(), ProductID: "invoice", Price: ecash.MustParseAmount(price),
		MerchantAccount: s.account, MerchantPub: s.m.PublicKey(), EPOID: id, ExpiresAt: now.Add(time.Hour),
	})
}

// TestVerifyLogPaymentOrders: the till checks every payment order the bank
// decided for it (goods and checks, approved and declined) in the bank's
// audit log, at the index the bank gave, or found by EPO hash for a receipt
// kept without one.
func TestVerifyLogPaymentOrders(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	_, q, d := s.offer("song")
	if _, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))); err != nil {
		t.Fatal(err)
	}
	s.writeCheck("EUR:5.00")
	if a := s.writeCheck("EUR:500.00"); a.Receipt.Decision != echeck.Declined {
		t.Fatal("a check beyond the balance was approved")
	}
	rep, err := s.m.VerifyLog(ctx)
	if err != nil || rep.Verified != 3 || rep.Waiting != 0 {
		t.Fatalf("%+v, %v; want the sale and both checks verified", rep, err)
	}
	if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Verified != 0 {
		t.Fatalf("again: %+v, %v; want nothing left to verify", rep, err)
	}
	// A receipt kept without its index (a till from before the index was
	// kept): the entry is found by the EPO hash.
	a := s.writeCheck("EUR:1.00")
	if err := s.m.db.Delete(saleLogKey(a.Receipt.EPOID), nil); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Verified != 1 {
		t.Fatalf("without the index: %+v, %v", rep, err)
	}
}

// TestVerifyLogPaymentOrderTampered: a bank whose log or answers do not
// record a payment order as its receipt says is caught, naming the payment
// order and the entry.
func TestVerifyLogPaymentOrderTampered(t *testing.T) {
	ctx := context.Background()
	t.Run("changed amount", func(t *testing.T) {
		s := newLyingShop(t, 1)
		a := s.writeCheck("EUR:5.00")
		at, err := s.bank.LogIndex(ctx, a.Receipt.EPOHash)
		if err != nil || at <= 0 {
			t.Fatal(at, err)
		}
		_, err = s.m.VerifyLog(ctx)
		if !errors.Is(err, logclient.ErrMismatch) || !containsAll(err.Error(), a.Receipt.EPOID.String(), "entry "+strconv.FormatInt(at, 10), "EUR:4.99", "EUR:5.00") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("missing entry", func(t *testing.T) {
		s := newLyingShop(t, 2)
		// Decided after the log began (by more than the clock skew): the
		// checkpoint fetched after the receipt must hold its entry.
		s.clock.add(ecash.MaxClockSkew + time.Second)
		a := s.writeCheck("EUR:5.00")
		_, err := s.m.VerifyLog(ctx)
		if !errors.Is(err, logclient.ErrMismatch) || !containsAll(err.Error(), "payment order "+a.Receipt.EPOID.String(), "is not in its audit log") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
	t.Run("wrong index", func(t *testing.T) {
		s := newShop(t)
		s.bankc.tamper = func(r *pb.CheckResult) { r.LogIndex = 1 }
		a := s.writeCheck("EUR:5.00")
		_, err := s.m.VerifyLog(ctx)
		if !errors.Is(err, logclient.ErrMismatch) || !containsAll(err.Error(), a.Receipt.EPOID.String(), "entry 1 ") {
			t.Fatalf("got %v", err)
		}
		t.Log(err)
	})
}

// TestVerifyLogPaymentOrderBeforeLog: a payment order the bank decided
// (by its signed receipt) before its log began, or within the clock skew
// after, may come from its records of then, which have no entry: it
// waits, as such a deposit does, and is no mismatch.
func TestVerifyLogPaymentOrderBeforeLog(t *testing.T) {
	ctx := context.Background()
	s := newLyingShop(t, 2)
	s.writeCheck("EUR:5.00")
	for run := range 2 {
		if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Waiting != 1 || rep.Verified != 0 {
			t.Fatalf("run %d: %s, %v; want the payment order waiting", run, counts(rep), err)
		}
	}
}

// TestVerifyLogPaymentOrderBackdated: a bank that leaves a payment order
// out of its log cannot make it wait for ever by dating its receipt before
// the log began. No honest bank decides an order before the order's EPOID
// time less the clock skew (it refuses one dated further ahead of its
// clock), so the order's own time bounds the decision's: one made after
// the log began is a mismatch, whatever the receipt says.
func TestVerifyLogPaymentOrderBackdated(t *testing.T) {
	ctx := context.Background()
	s := newLyingShop(t, 2)
	began := s.clock.now()
	s.clock.add(time.Hour) // well after the log began
	signing := bankKeys(t).Signing
	s.bankc.tamper = func(res *pb.CheckResult) {
		r, err := echeck.DecodeReceipt(res.Receipt)
		if err != nil {
			t.Error(err)
			return
		}
		r.DecidedAt = began.Add(-time.Hour)
		r.Sign(signing)
		res.Receipt = r.Encode()
	}
	a := s.writeCheck("EUR:5.00")
	if !a.Receipt.DecidedAt.Before(began) {
		t.Fatalf("the receipt is dated %v, want it backdated before %v", a.Receipt.DecidedAt, began)
	}
	rep, err := s.m.VerifyLog(ctx)
	if !errors.Is(err, logclient.ErrMismatch) || !containsAll(err.Error(), "payment order "+a.Receipt.EPOID.String(), "is not in its audit log", "at the earliest",
		"its answer is dated "+a.Receipt.DecidedAt.UTC().Format(time.RFC3339)) {
		t.Fatalf("%s, %v; want a mismatch naming the payment order", counts(rep), err)
	}
	t.Log(err)
}

// checkpointHook is the bank's audit log, running after (once, when set)
// the next checkpoint is fetched: what happens while VerifyLog runs.
type checkpointHook struct {
	pb.AuditLogClient
	after func()
}

func (h *checkpointHook) GetCheckpoint(ctx context.Context, in *pb.GetCheckpointRequest, opts ...grpc.CallOption) (*pb.GetCheckpointResponse, error) {
	resp, err := h.AuditLogClient.GetCheckpoint(ctx, in, opts...)
	if f := h.after; f != nil {
		h.after = nil
		f()
	}
	return resp, err
}

// TestVerifyLogPaymentOrderAnsweredMeanwhile: a payment order decided
// after the checkpoint was fetched is not evidence against it and waits,
// once: the next run judges it against a newer checkpoint, which holds its
// entry, or else (the bank named an entry past every checkpoint) reports
// it, rather than letting it wait for ever.
func TestVerifyLogPaymentOrderAnsweredMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(*pb.CheckResult)
	}{
		{"logged", nil},
		{"named past every checkpoint", func(r *pb.CheckResult) { r.LogIndex = 1 << 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newShop(t)
			s.clock.add(ecash.MaxClockSkew + time.Second) // after the log began
			s.bankc.tamper = tc.tamper
			var a *CheckAnswer
			s.logc.AuditLogClient = &checkpointHook{AuditLogClient: s.logc.AuditLogClient, after: func() { a = s.writeCheck("EUR:5.00") }}
			if rep, err := s.m.VerifyLog(ctx); err != nil || rep.Waiting != 1 || rep.Verified != 0 {
				t.Fatalf("decided meanwhile: %s, %v; want it waiting", counts(rep), err)
			}
			rep, err := s.m.VerifyLog(ctx)
			if tc.tamper == nil {
				if err != nil || rep.Verified != 1 || rep.Waiting != 0 {
					t.Fatalf("next run: %s, %v; want it verified", counts(rep), err)
				}
				return
			}
			if !errors.Is(err, logclient.ErrMismatch) || !containsAll(err.Error(), "payment order "+a.Receipt.EPOID.String(), "entry 1099511627776, past the checkpoint") {
				t.Fatalf("next run: %s, %v; want a mismatch naming the payment order", counts(rep), err)
			}
			t.Log(err)
		})
	}
}

// counts is what a report counted, for a failure's message.
func counts(rep *LogReport) string {
	if rep == nil {
		return "no report"
	}
	return fmt.Sprintf("%d verified, %d waiting", rep.Verified, rep.Waiting)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestAdminVerifyLogMismatchEvidence: the admin service's answer to a log
// that does not match a receipt carries the signed checkpoint the merchant
// holds (the status's detail), what "merchantd verify-log
// --checkpoint-out" writes as the evidence; the checkpoint is the one the
// merchant saved.
func TestAdminVerifyLogMismatchEvidence(t *testing.T) {
	ctx := context.Background()
	s := newLyingShop(t, 1)
	s.writeCheck("EUR:5.00")
	_, err := s.m.AdminServer().VerifyLog(ctx, &pb.VerifyLogRequest{})
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("got %v, want FAILED_PRECONDITION", err)
	}
	var held *pb.VerifyLogResponse
	for _, d := range st.Details() {
		if r, ok := d.(*pb.VerifyLogResponse); ok {
			held = r
		}
	}
	if held == nil {
		t.Fatalf("the mismatch (%v) carries no report", err)
	}
	saved, err := s.m.get(keyWitness)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := auditlog.SavedCheckpoint(saved)
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) == 0 || !bytes.Equal(held.Checkpoint, signed) {
		t.Fatalf("the report's checkpoint is not the one held:\n%q\nwant\n%q", held.Checkpoint, signed)
	}
	if held.LogSize <= 0 || len(held.Root) != 32 {
		t.Fatalf("report of %d entries, root %x", held.LogSize, held.Root)
	}
}

// forgingLog is a bank's audit log that refuses GetCheckpoint with a
// FAILED_PRECONDITION carrying a VerifyLogResponse detail of its making.
type forgingLog struct {
	pb.AuditLogClient
	forged []byte
}

func (f *forgingLog) GetCheckpoint(context.Context, *pb.GetCheckpointRequest, ...grpc.CallOption) (*pb.GetCheckpointResponse, error) {
	st, err := status.New(codes.FailedPrecondition, "no").WithDetails(&pb.VerifyLogResponse{LogSize: 1, Root: make([]byte, 32), Checkpoint: f.forged})
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

// TestAdminVerifyLogNoBankDetails: the bank is the party the log check
// audits, so a detail in its refusal must not reach the merchant's admin
// client, whose verify-log writes a VerifyLogResponse detail as the
// checkpoint the merchant holds: the bank would choose the evidence
// against itself.
func TestAdminVerifyLogNoBankDetails(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	forged := []byte("bank.example/log\n1\nAAAA\n\n— forged\n")
	s.logc.AuditLogClient = &forgingLog{AuditLogClient: s.logc.AuditLogClient, forged: forged}
	_, err := s.m.AdminServer().VerifyLog(ctx, &pb.VerifyLogRequest{})
	if err == nil {
		t.Fatal("VerifyLog passed with the log refusing")
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if r, ok := d.(*pb.VerifyLogResponse); ok {
			t.Fatalf("the bank's detail reached the admin client (%v): checkpoint %q", err, r.Checkpoint)
		}
	}
}
