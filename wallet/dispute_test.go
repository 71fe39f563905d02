package wallet_test

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"filippo.io/edwards25519"
	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// corruptingBank forwards to the real bank and, when told, spoils its
// answers as a bank that committed and answered wrong would (a faulty
// signer, or a hostile bank): a bit of the last blind signature of a
// withdrawal, swap or restore flipped; too many signatures; or CS R values
// carrying a point of small order.
type corruptingBank struct {
	pb.BankClient
	withdraws, swaps, issued atomic.Bool
	garbage                  atomic.Bool // restore: a signature for every blinded message asked about
	flood                    atomic.Bool // withdrawals: more signatures than planchets, one over-long
	tagR                     atomic.Bool // first round: R0 and R1 plus a point of order 2
}

func corruptLast(sigs [][]byte) {
	for i := len(sigs) - 1; i >= 0; i-- {
		if len(sigs[i]) > 0 {
			sigs[i][len(sigs[i])-1] ^= 1
			return
		}
	}
}

func (c *corruptingBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	resp, err := c.BankClient.Withdraw(ctx, in, opts...)
	if err == nil && c.withdraws.Load() {
		corruptLast(resp.BlindSignatures)
	}
	if err == nil && c.flood.Load() {
		// What fits in a gRPC message: more signatures than a request may
		// carry, and one longer than any blind signature.
		for range ecash.MaxCoinsPerRequest + 1 {
			resp.BlindSignatures = append(resp.BlindSignatures, []byte{1})
		}
		resp.BlindSignatures[0] = make([]byte, 1<<20)
	}
	return resp, err
}

func (c *corruptingBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := c.BankClient.Swap(ctx, in, opts...)
	if err == nil && c.swaps.Load() {
		corruptLast(resp.BlindSignatures)
	}
	return resp, err
}

func (c *corruptingBank) IssuedSignatures(ctx context.Context, in *pb.IssuedSignaturesRequest, opts ...grpc.CallOption) (*pb.IssuedSignaturesResponse, error) {
	resp, err := c.BankClient.IssuedSignatures(ctx, in, opts...)
	if err == nil && c.issued.Load() {
		corruptLast(resp.BlindSignatures)
	}
	if err == nil && c.garbage.Load() {
		for i, sig := range resp.BlindSignatures {
			if len(sig) == 0 {
				resp.BlindSignatures[i] = []byte{0, 1, 2}
			}
		}
	}
	return resp, err
}

func (c *corruptingBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	resp, err := c.BankClient.PrepareWithdraw(ctx, in, opts...)
	if err == nil && c.tagR.Load() {
		order2, _ := hex.DecodeString("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
		t2, _ := new(edwards25519.Point).SetBytes(order2)
		for _, a := range resp.Answers {
			for i := 0; i+32 <= len(a); i += 32 {
				p, perr := new(edwards25519.Point).SetBytes(a[i : i+32])
				if perr == nil {
					copy(a[i:i+32], p.Add(p, t2).Bytes())
				}
			}
		}
	}
	return resp, err
}

// outstandingGap is the e-cash the bank has issued that the wallet does not
// hold: what bad answers cost it.
func (f *fixture) outstandingGap(t *testing.T, w *wallet.Wallet) int64 {
	t.Helper()
	totals, err := f.bank.Store().Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	return totals[bank.AccountOutstanding] - int64(bal.Fresh.Value+bal.Pending.Value+bal.Expired.Value)
}

// disputes returns w's disputes by kind, checking each carries its evidence.
func disputes(t *testing.T, w *wallet.Wallet) map[string][]wallet.Dispute {
	t.Helper()
	ds, err := w.Disputes()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]wallet.Dispute{}
	for _, d := range ds {
		if len(d.Request) == 0 || len(d.Indices) == 0 || len(d.Prepared) != len(d.Indices) || len(d.Answer) == 0 || d.Lost.IsZero() || d.Reason == "" || d.At.IsZero() {
			t.Errorf("%s dispute without its evidence: %+v", d.Kind, d)
		}
		out[d.Kind] = append(out[d.Kind], d)
	}
	return out
}

// TestBadAnswerKeptAsDispute: withdrawals, swaps and a restore that the bank
// commits but answers in part with signatures that do not verify keep the
// coins that do, record the others as a dispute with the evidence (the
// answer would be the same on every retry), and leave nothing pending: the
// wallet goes on withdrawing, swapping and recovering.
func TestBadAnswerKeptAsDispute(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, acct := fundedWallet(t, f, "EUR:20.00")
	bad := &corruptingBank{BankClient: f.bankc}

	// One bad signature of ten: nine coins kept, one cent lost.
	bad.withdraws.Store(true)
	coins, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:2.00"), nil)
	if !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("withdraw answered wrong: %v, want ErrBadAnswer", err)
	}
	if got := f.balance(t, acct); got != 1800 {
		t.Fatalf("account %d after the bad answer, want 1800: the bank committed", got)
	}
	if n, err := w.PendingWithdrawals(); n != 0 || err != nil {
		t.Fatalf("%d pending withdrawals (%v): a bad answer must not be retried forever", n, err)
	}
	ds := disputes(t, w)["withdraw"]
	if len(ds) != 1 || len(ds[0].Indices) != 1 {
		t.Fatalf("withdraw disputes %+v, want one over one planchet", ds)
	}
	lost := int64(ds[0].Lost.Value)
	if got := fresh(t, w); len(coins) == 0 || got != (ecash.Amount{Currency: "EUR", Value: uint64(200 - lost)}).String() {
		t.Errorf("fresh %s with %d coins returned: want EUR 2.00 less the %s lost", got, len(coins), ds[0].Lost)
	}
	if gap := f.outstandingGap(t, w); gap != lost {
		t.Errorf("issued but not held: %d, want the %d lost", gap, lost)
	}
	if _, err := ecash.DecodeWithdrawRequest(ds[0].Request); err != nil {
		t.Errorf("the dispute's request: %v", err)
	}

	// A bad answer met while recovering (the first answer was lost): it is
	// recorded, and the call goes on to its own withdrawal.
	lossy := &lossyBank{BankClient: bad}
	lossy.loseWithdraw.Store(1)
	if _, err := w.Withdraw(ctx, lossy, ecash.MustParseAmount("EUR:0.01"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("lost answer: %v, want ErrPending", err)
	}
	gapBefore := f.outstandingGap(t, w) // the pending cent is issued, not held
	if _, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:0.01"), nil); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("withdraw after recovering a bad answer: %v, want ErrBadAnswer (of its own)", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d pending withdrawals after recovery", n)
	}
	if n := len(disputes(t, w)["withdraw"]); n != 3 {
		t.Fatalf("%d withdraw disputes, want 3", n)
	}
	bad.withdraws.Store(false)
	if gap := f.outstandingGap(t, w); gap != gapBefore+1 {
		t.Errorf("issued but not held: %d, want %d + the new withdrawal's cent", gap, gapBefore)
	}

	// The wallet is not stuck.
	if _, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:5.12"), nil); err != nil {
		t.Fatalf("withdraw after disputes: %v", err)
	}
	if _, err := w.Recover(ctx, bad); err != nil {
		t.Fatalf("recover after disputes: %v", err)
	}

	// A swap answered in part wrong: the inputs are spent, the good outputs
	// kept.
	bad.swaps.Store(true)
	gapBefore = f.outstandingGap(t, w)
	if _, err := w.Swap(ctx, bad, ecash.MustParseAmount("EUR:1.00")); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("swap answered wrong: %v, want ErrBadAnswer", err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	sw := disputes(t, w)["swap"]
	if len(sw) != 1 {
		t.Fatalf("swap disputes %+v, want one", sw)
	}
	if !bal.Pending.IsZero() {
		t.Errorf("pending %s after the bad swap, want nothing", bal.Pending)
	}
	if gap := f.outstandingGap(t, w); gap != gapBefore+int64(sw[0].Lost.Value) {
		t.Errorf("issued but not held: %d, want %d + the %s lost", gap, gapBefore, sw[0].Lost)
	}
	bad.swaps.Store(false)
	if _, err := w.Swap(ctx, bad, ecash.MustParseAmount("EUR:0.01")); err != nil {
		t.Fatalf("swap after a dispute: %v", err)
	}

	// CS R values carrying a point of small order (in both clauses, so
	// whichever the bank chooses): every CS coin of the withdrawal is
	// disputed, no tagged coin kept.
	bad.tagR.Store(true)
	coins, err = w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:0.07"), nil)
	bad.tagR.Store(false)
	if !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("withdraw with tagged R values: %v, want ErrBadAnswer", err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range coins {
		if d, err := ks.Denomination(c.Denom); err == nil && d.Key.Cipher() == ecash.CipherCS {
			t.Errorf("a CS coin kept from tagged R values")
		}
	}

	// An answer beyond every bound: all planchets disputed, the record cut
	// to its bounds, and the disputes still read.
	bad.flood.Store(true)
	if _, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:0.01"), nil); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("withdraw answered with too many signatures: %v, want ErrBadAnswer", err)
	}
	bad.flood.Store(false)
	if !slices.ContainsFunc(disputes(t, w)["withdraw"], func(d wallet.Dispute) bool {
		return len(d.Answer) == ecash.MaxCoinsPerRequest && len(d.Answer[0]) < 1<<20
	}) {
		t.Error("the flooded answer is not kept cut to the record's bounds")
	}
}

// TestRestoreBadSignature: a restore whose bank answers a signature wrong
// records it and finishes with the rest.
func TestRestoreBadSignature(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:10.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	seed := w.Seed()
	bad := &corruptingBank{BankClient: f.bankc}
	bad.issued.Store(true)
	r, rep, err := wallet.Restore(ctx, t.TempDir(), seed, bad, wallet.Options{}, nil)
	if err != nil {
		t.Fatalf("restore through a bank that answers one signature wrong: %v", err)
	}
	defer r.Close()
	if rep.Disputed != 1 || rep.Found == 0 {
		t.Fatalf("restore report %+v, want one disputed signature and the other coins found", rep)
	}
	if ds := disputes(t, r)["restore"]; len(ds) != 1 {
		t.Fatalf("restore disputes %+v, want one", ds)
	}

	// A bank that claims a (bad) signature for everything asked about: the
	// restore ends, with an error, instead of scanning on for ever.
	bad.issued.Store(false)
	bad.garbage.Store(true)
	if _, _, err := wallet.Restore(ctx, t.TempDir(), seed, bad, wallet.Options{}, nil); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("restore through a bank answering garbage: %v, want ErrBadAnswer", err)
	}
}
