package bank

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// historyStore answers History from a list, newest first, for one
// merchant account; nothing else.
type historyStore struct {
	Store
	hist []Posting
}

func (s historyStore) Totals(context.Context) (map[uint64]int64, error) {
	return map[uint64]int64{FirstUserAccount: 50}, nil
}

func (s historyStore) Account(_ context.Context, id uint64) (Account, error) {
	return Account{ID: id, Merchant: true, Balance: 50}, nil
}

func (s historyStore) History(_ context.Context, _ uint64, limit int) ([]Posting, error) {
	return s.hist[:min(limit, len(s.hist))], nil
}

// TestStatementBeyondTheScan: a statement whose period reaches back past
// the postings the bank reads is refused, not signed with lines missing
// and a wrong opening balance; within them it is exact.
func TestStatementBeyondTheScan(t *testing.T) {
	old := maxStatementScan
	maxStatementScan = 3
	defer func() { maxStatementScan = old }()
	t0 := time.Unix(1_800_000_000, 0)
	var hist []Posting // five credits of 10, one a day, newest first
	for i := 5; i >= 1; i-- {
		hist = append(hist, Posting{Seq: uint64(i), Time: t0.Add(time.Duration(i) * 24 * time.Hour), Kind: KindCredit, Amount: 10, Balance: int64(10 * i)})
	}
	_, signing, _ := ed25519.GenerateKey(nil)
	b := &Bank{store: historyStore{hist: hist}, keys: &Keys{Currency: "EUR", Signing: signing}}
	acct := Account{ID: FirstUserAccount, Balance: 50}
	if _, err := b.statement(context.Background(), acct, t0, t0.Add(10*24*time.Hour)); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("a period past the scan: %v, want refused", err)
	}
	st, err := b.statement(context.Background(), acct, t0.Add(3*24*time.Hour+time.Hour), t0.Add(10*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Opening != 30 || len(st.Lines) != 2 {
		t.Fatalf("opening %d with %d lines, want 30 and 2", st.Opening, len(st.Lines))
	}
	// An account of exactly as many postings as are scanned: the whole
	// history is read, and a period before its first posting is exact.
	b.store = historyStore{hist: hist[2:]}
	st, err = b.statement(context.Background(), Account{ID: FirstUserAccount, Balance: 30}, t0, t0.Add(10*24*time.Hour))
	if err != nil || st.Opening != 0 || len(st.Lines) != 3 {
		t.Fatalf("a history of exactly the scan: %+v, %v; want opening 0 and 3 lines", st, err)
	}
}

// TestOwedBeyondTheScan: the settlement report refuses a period reaching
// back past the postings it reads, as a statement does.
func TestOwedBeyondTheScan(t *testing.T) {
	old := maxStatementScan
	maxStatementScan = 3
	defer func() { maxStatementScan = old }()
	t0 := time.Unix(1_800_000_000, 0)
	var hist []Posting
	for i := 5; i >= 1; i-- {
		hist = append(hist, Posting{Seq: uint64(i), Time: t0.Add(time.Duration(i) * 24 * time.Hour), Kind: KindDeposit, Amount: 10, Balance: int64(10 * i)})
	}
	b := &Bank{store: historyStore{hist: hist}, keys: &Keys{Currency: "EUR"}}
	if _, err := b.Owed(context.Background(), t0, t0.Add(10*24*time.Hour)); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("a period past the scan: %v, want refused", err)
	}
	owed, err := b.Owed(context.Background(), t0.Add(3*24*time.Hour+time.Hour), t0.Add(10*24*time.Hour))
	if err != nil || len(owed) != 1 || owed[0].Credited != 20 {
		t.Fatalf("within the scan: %+v, %v; want 20 credited", owed, err)
	}
}

// TestStatementShowsOldText: a posting stored before echeck's text rules
// (an admin memo with a newline, a product id with an escape, a memo longer
// than a statement line may carry) is shown in the statement with the
// hidden characters replaced, not signed as is into a statement no wallet
// can decode.
func TestStatementShowsOldText(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	hist := []Posting{
		{Seq: 3, Time: t0.Add(3 * time.Hour), Kind: KindCredit, Amount: 10, Balance: 30, Memo: strings.Repeat("é", echeck.MaxMemoLen)},
		{Seq: 2, Time: t0.Add(2 * time.Hour), Kind: KindCheck, Ref: echeck.NewEPOID(1000, t0, 1).String(), Amount: 10, Balance: 20, Product: "inv\x1b[2K", Memo: "rent\tMay"},
		{Seq: 1, Time: t0.Add(time.Hour), Kind: KindCredit, Amount: 10, Balance: 10, Memo: "wire transfer\nref 42"},
	}
	_, signing, _ := ed25519.GenerateKey(nil)
	b := &Bank{store: historyStore{hist: hist}, keys: &Keys{Currency: "EUR", Signing: signing}}
	st, err := b.statement(context.Background(), Account{ID: FirstUserAccount, Balance: 30}, t0, t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := echeck.DecodeStatement(st.Encode())
	if err != nil {
		t.Fatalf("the bank signed a statement no wallet can decode: %v", err)
	}
	if got := dec.Lines[0].Memo; got != "wire transfer\uFFFDref 42" {
		t.Errorf("memo %q", got)
	}
	if got := dec.Lines[1]; got.ProductID != "inv\uFFFD[2K" || got.Memo != "rent\uFFFDMay" {
		t.Errorf("check line: product %q, memo %q", got.ProductID, got.Memo)
	}
	if got := dec.Lines[2].Memo; len(got) > echeck.MaxMemoLen || got != strings.Repeat("é", echeck.MaxMemoLen/2) {
		t.Errorf("long memo cut to %d bytes", len(got))
	}
}

// TestOwedAddsUp: the settlement report showed what was credited and paid
// out in the period and the balance now, so a row with a refund and its
// fee in the period (or postings since) did not add up. Each row now has
// its opening and closing balances and the period's other postings:
// opening + credited - paid out + other = closing.
func TestOwedAddsUp(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	day := 24 * time.Hour
	hist := []Posting{ // newest first
		{Seq: 6, Time: t0.Add(5 * day), Kind: KindDeposit, Amount: 10, Balance: 47}, // after the period
		{Seq: 5, Time: t0.Add(3 * day), Kind: KindFee, Amount: -1, Balance: 37},
		{Seq: 4, Time: t0.Add(3 * day), Kind: KindRefund, Amount: -3, Balance: 38},
		{Seq: 3, Time: t0.Add(2 * day), Kind: KindPayout, Amount: -20, Balance: 41},
		{Seq: 2, Time: t0.Add(day), Kind: KindDeposit, Amount: 11, Balance: 61},
		{Seq: 1, Time: t0.Add(-day), Kind: KindDeposit, Amount: 50, Balance: 50}, // before it
	}
	b := &Bank{store: historyStore{hist: hist}, keys: &Keys{Currency: "EUR"}}
	owed, err := b.Owed(context.Background(), t0, t0.Add(4*day))
	if err != nil || len(owed) != 1 {
		t.Fatalf("%+v, %v; want one row", owed, err)
	}
	o := owed[0]
	if o.Opening != 50 || o.Credited != 11 || o.PaidOut != 20 || o.Other != -4 || o.Closing != 37 {
		t.Errorf("%+v; want opening 50, credited 11, paid out 20, other -4, closing 37", o)
	}
	if o.Opening+o.Credited-o.PaidOut+o.Other != o.Closing {
		t.Errorf("%+v does not add up", o)
	}
}

// TestOwedSumsDoNotOverflow: the period's sums were plain int64 additions,
// each posting at most ecash.MaxValue but a period up to maxStatementScan
// of them: a merchant paid out whatever it is credited, some thousand
// times the largest amount, wrapped CREDITED and PAID OUT negative, a row
// that still "added up". The report is refused instead, as a balance past
// int64 is.
func TestOwedSumsDoNotOverflow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	const n = 1100     // n * MaxValue > MaxInt64
	var hist []Posting // newest first: a payout of all after each deposit
	for i := n; i >= 1; i-- {
		at := t0.Add(time.Duration(i) * time.Minute)
		hist = append(hist,
			Posting{Seq: uint64(2 * i), Time: at, Kind: KindPayout, Amount: -ecash.MaxValue, Balance: 0},
			Posting{Seq: uint64(2*i - 1), Time: at, Kind: KindDeposit, Amount: ecash.MaxValue, Balance: ecash.MaxValue})
	}
	b := &Bank{store: historyStore{hist: hist}, keys: &Keys{Currency: "EUR"}}
	owed, err := b.Owed(context.Background(), t0, t0.Add(24*time.Hour))
	if err == nil {
		t.Fatalf("%+v; want the sums' overflow refused", owed)
	}
	if !errors.Is(err, ErrBalanceOverflow) {
		t.Fatalf("%v; want ErrBalanceOverflow", err)
	}
}
