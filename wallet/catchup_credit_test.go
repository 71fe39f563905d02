package wallet_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// collectDuringWithdraw runs collect on the first Withdraw, before
// relaying it.
type collectDuringWithdraw struct {
	pb.BankClient
	withdraws atomic.Int32
	collect   func()
}

func (b *collectDuringWithdraw) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if b.withdraws.Add(1) == 1 {
		b.collect()
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

// transcriptLine is one line of a transcript, as far as these tests read
// it.
type transcriptLine struct {
	Step string `json:"step"`
	Note string `json:"note"`
	Data string `json:"data"`
}

// transcriptSteps parses a transcript.
func transcriptSteps(t *testing.T, b []byte) []transcriptLine {
	t.Helper()
	var out []transcriptLine
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var tl transcriptLine
		if err := json.Unmarshal(l, &tl); err != nil {
			t.Fatalf("transcript line %q: %v", l, err)
		}
		out = append(out, tl)
	}
	return out
}

// coinLine decodes a transcript's coin line.
func coinLine(t *testing.T, l transcriptLine) ecash.Coin {
	t.Helper()
	raw, err := hex.DecodeString(l.Data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ecash.DecodeCoin(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkCoinLines checks a transcript's coin lines: each coin has at most
// one, and the coins with one are exactly those of want (the coins the
// wallet's requests returned). A coin a scan took in (TRANSCRIPTS.md §3,
// "coin") has none: a lost copy's coin found at the planchet of a request
// of this wallet not settled yet is no output of that request, and a line
// would credit it to that request.
func checkCoinLines(t *testing.T, when string, transcript []byte, want []ecash.Coin) {
	t.Helper()
	ours := map[ecash.Hash]bool{}
	for _, c := range want {
		ours[c.ID()] = true
	}
	seen := map[ecash.Hash]bool{}
	for _, l := range transcriptSteps(t, transcript) {
		if l.Step != "coin" {
			continue
		}
		id := coinLine(t, l).ID()
		if seen[id] {
			t.Errorf("%s: coin %s has two coin lines", when, id.String()[:16])
		}
		if !ours[id] {
			t.Errorf("%s: coin %s has a coin line, but no request of this wallet returned it: a coin the scan took in, credited to the request pending at its planchet", when, id.String()[:16])
		}
		seen[id] = true
	}
	if len(seen) != len(ours) {
		t.Errorf("%s: %d coins with a coin line, want %d", when, len(seen), len(ours))
	}
}

// TestCatchUpTakesInRefundCollection: a wallet put back from a copy pays
// EUR:0.32 and the merchant refunds it. It withdraws (R, from the stale
// counter c, indices the lost copy used); meanwhile it collects the
// refund: swap X, of the refund credit, reserves the indices after R's,
// the bank commits it and its answer is lost (and again when the
// catch-up sends it before its scan). R is refused (ErrAlreadyIssued)
// and catches up: the scan from c takes in the lost copy's coins and X's
// outputs. X is still pending: Balance counted its
// outputs fresh and, as a refund collection not settled, their value
// pending too, EUR:0.32 twice until Recover. X's outputs, taken in by the
// scan, get no coin line, neither then nor when Recover settles X and
// finds them held (TRANSCRIPTS.md §3, "coin"): the transcript's coins are
// R's, each once. (A scan cannot tell X's outputs from a lost copy's
// coins at X's planchets: TestCatchUpCoinsAtInFlightSwapPlanchets.)
func TestCatchUpTakesInRefundCollection(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, scheduleKeys(t, clk.now(), 40*time.Hour), clk.now)
	var tr bytes.Buffer
	r, _ := putBackWalletWith(t, f, clk, wallet.Options{Transcript: &tr}, "EUR:0.64", "EUR:0.63")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.32"), "a lamp", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.merchant.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:0.32")); err != nil {
		t.Fatal(err)
	}
	var collectErr error
	// Both X's answer and that of the catch-up's try to settle it first
	// are lost: X is still pending when the scan takes in its outputs.
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(2)
	bank := &collectDuringWithdraw{BankClient: lossy}
	bank.collect = func() {
		_, collectErr = r.CollectRefunds(ctx, lossy)
	}
	withdrawn, err := r.Withdraw(ctx, bank, ecash.MustParseAmount("EUR:0.63"), nil)
	if err != nil {
		t.Fatalf("withdrawal (caught up): %v", err)
	}
	if !errors.Is(collectErr, wallet.ErrPending) {
		t.Fatalf("the refund's collection, its answer lost: %v, want ErrPending", collectErr)
	}
	bal, err := r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// The copy's 0.32 left, the lost copy's 0.63, the refund's 0.32, R's 0.63.
	t.Logf("after the catch-up: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Fresh.Value+bal.Pending.Value != 32+63+32+63 {
		t.Errorf("fresh %s and pending %s: the refund's EUR:0.32 counted twice", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
	if n, err := r.PendingSwaps(); err != nil || n != 1 {
		t.Fatalf("%d swaps pending (%v), want the refund's collection: settled by Recover", n, err)
	}

	checkCoinLines(t, "after the catch-up", tr.Bytes(), withdrawn)

	rep, err := r.Recover(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refused) != 0 {
		t.Fatalf("Recover reports %+v", rep.Refused)
	}
	bal, err = r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after Recover: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Fresh.Value != 32+63+32+63 || !bal.Pending.IsZero() {
		t.Errorf("after Recover: fresh %s, pending %s; want EUR:1.90 fresh", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
	if n, _ := r.PendingSwaps(); n != 0 {
		t.Fatalf("%d swaps pending after Recover", n)
	}
	checkCoinLines(t, "after Recover settled the refund's swap", tr.Bytes(), withdrawn)
}
