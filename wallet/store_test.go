package wallet

import (
	"bytes"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// TestCoinRecordRevealed: the revealed flag round-trips, and a coin record
// written before it existed (no trailing byte) decodes, as an unrevealed
// coin, while an unrevealed record is still written as it was: wallets
// keep their stores across the upgrade, both ways.
func TestCoinRecordRevealed(t *testing.T) {
	c := coinRecord{Index: 7, Coin: ecash.Coin{Pub: bytes.Repeat([]byte{1}, 32), Sig: []byte{2}}, Value: ecash.MustParseAmount("EUR:0.02"), State: CoinFresh}
	// The encoding before the flag, field by field.
	e := ecash.NewEncoder("wallet/coin")
	e.U64(c.Index)
	e.VarBytes(c.Coin.Encode())
	e.Amount(c.Value)
	e.U8(c.State)
	e.Fixed(c.Payment[:])
	old := e.Bytes()
	if !bytes.Equal(c.encode(), old) {
		t.Fatal("an unrevealed coin record is no longer written as before")
	}
	got, err := decodeCoinRecord(old)
	if err != nil || got.Revealed || got.Index != c.Index || got.Value != c.Value || got.State != c.State {
		t.Fatalf("an old record decodes as %+v, %v", got, err)
	}
	c.Revealed = true
	if got, err = decodeCoinRecord(c.encode()); err != nil || !got.Revealed {
		t.Fatalf("a revealed record decodes as %+v, %v", got, err)
	}
	if _, err := decodeCoinRecord(append(old, 2)); err == nil {
		t.Error("a record with an unknown flag decoded")
	}
}

// TestLogCheckRecordCredited: a deposit's log check keeps the merchant and
// the amount its receipt says were credited, and a record written before
// them decodes (checking the coins only), as it was written.
func TestLogCheckRecordCredited(t *testing.T) {
	coins := []ecash.Hash{ecash.HashOf([]byte("a")), ecash.HashOf([]byte("b"))}
	old := (&logCheck{Kind: logDeposit, Index: 9, Coins: coins}).encode()
	got, err := decodeLogCheck(old)
	if err != nil || got.Merchant != 0 || got.Index != 9 || len(got.Coins) != 2 {
		t.Fatalf("a record without the credit decodes as %+v, %v", got, err)
	}
	c := &logCheck{Kind: logDeposit, Coins: coins, Merchant: 1001, Credited: ecash.MustParseAmount("EUR:3.50")}
	enc := c.encode()
	if got, err = decodeLogCheck(enc); err != nil || got.Merchant != 1001 || got.Credited != c.Credited {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := decodeLogCheck(append(enc, 0)); err == nil {
		t.Fatal("a record with a trailing byte decodes")
	}
}

// TestNewCoinsOnceEach: a coin id twice in one batch (a planchet reused
// under the same key) is one coin: written twice, both records were
// returned and the transcript issued the coin twice, which its audit
// refuses.
func TestNewCoinsOnceEach(t *testing.T) {
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := coinRecord{Index: 3, Coin: ecash.Coin{Pub: bytes.Repeat([]byte{1}, 32), Sig: []byte{2}}, Value: ecash.MustParseAmount("EUR:0.02"), State: CoinFresh}
	again := c
	again.Index = 9
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.db.NewBatch()
	defer b.Close()
	added, err := w.newCoins(b, []coinRecord{c, again})
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 1 || added[0].Index != 3 {
		t.Fatalf("one coin twice in a batch added %d records (%+v), want the first alone", len(added), added)
	}
}
