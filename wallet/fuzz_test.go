package wallet

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Fuzz target for every decoder of a wallet record (what a damaged or
// tampered wallet directory hands the wallet at Open and after). Properties:
// no panic; a failure wraps ecash.ErrMalformed; a record that decodes
// re-encodes to exactly its bytes, or, for the records with optional
// trailing fields (written only when set, so that records of before decode
// as they were), to a prefix of them that drops only such a field; and the
// re-encoding decodes to the same record. Run it with:
//
//	go test -run='^$' -fuzz=FuzzDecodeWalletRecord -fuzztime=20s ./wallet/

type walletCodec struct {
	name     string
	decode   func([]byte) (any, error)
	encode   func(any) []byte
	trailing bool // has optional trailing fields a re-encoding may drop
}

var walletCodecs = []walletCodec{
	{"coin", func(b []byte) (any, error) { return decodeCoinRecord(b) },
		func(v any) []byte { return v.(*coinRecord).encode() }, false},
	{"withdraw", func(b []byte) (any, error) { return decodePendingWithdraw(b) },
		func(v any) []byte { return v.(*pendingWithdraw).encode() }, true},
	{"payment", func(b []byte) (any, error) { return decodePendingPayment(b) },
		func(v any) []byte { return v.(*pendingPayment).encode() }, false},
	{"swap", func(b []byte) (any, error) { return decodePendingSwap(b) },
		func(v any) []byte { return v.(*pendingSwap).encode() }, true},
	{"dispute", func(b []byte) (any, error) { return decodeDispute(b) },
		func(v any) []byte { return v.(*Dispute).encode() }, false},
	{"refused", func(b []byte) (any, error) { return decodeRefusedWithdrawal(b) },
		func(v any) []byte { return v.(*RefusedWithdrawal).encode() }, false},
	{"log-check", func(b []byte) (any, error) { return decodeLogCheck(b) },
		func(v any) []byte { return v.(*logCheck).encode() }, true},
	{"purchase", func(b []byte) (any, error) { return decodePurchaseRecord(b) },
		func(v any) []byte { return v.(*purchaseRecord).encode() }, false},
}

// walletRecords are valid records of each type (by index in walletCodecs).
func walletRecords() [][][]byte {
	h := func(c byte) ecash.Hash { return ecash.Hash(bytes.Repeat([]byte{c}, 32)) }
	eur := ecash.MustParseAmount("EUR:0.02")
	coin := ecash.Coin{Denom: h(1), Pub: bytes.Repeat([]byte{2}, 32), Sig: bytes.Repeat([]byte{3}, 64)}
	at := time.UnixMilli(1_700_000_000_123)
	return [][][]byte{
		{(&coinRecord{Index: 7, Coin: coin, Value: eur, State: CoinPending, Payment: h(4)}).encode(),
			(&coinRecord{Index: 8, Coin: coin, Value: eur, State: CoinFresh, Payment: h(4), Revealed: true}).encode()},
		{(&pendingWithdraw{Body: []byte("body"), Sig: bytes.Repeat([]byte{5}, 64), Indices: []uint64{3, 4},
			Prepared: [][]byte{bytes.Repeat([]byte{6}, 64), nil}, res: &reservation{first: 3, end: 5, gen: 2}}).encode(),
			(&pendingWithdraw{Body: []byte("body"), Sig: []byte{1}, Indices: []uint64{9}, Prepared: [][]byte{nil}}).encode()},
		{(&pendingPayment{Merchant: "shop.example:7443", OrderID: "o-1", Request: []byte("request"), Sealed: []byte("sealed"),
			Coins: []ecash.Hash{h(7), h(8)}}).encode()},
		{(&pendingSwap{Body: []byte("swap"), Indices: []uint64{10, 11}, Prepared: [][]byte{nil, {1}}, Inputs: []ecash.Hash{h(9)},
			Credits: []ecash.Hash{h(9)}}).encode(),
			(&pendingSwap{Body: []byte("recoup"), Recoup: true}).encode()},
		{(&Dispute{Kind: "swap", Request: []byte("request"), Indices: []uint64{1, 2}, Prepared: [][]byte{nil, {1, 2}},
			Answer: [][]byte{{3}, {4}}, Lost: eur, Reason: "bad signature", At: at}).encode()},
		{(&RefusedWithdrawal{Nonce: [16]byte{1, 2}, Amount: eur, Reason: "FailedPrecondition: funds", At: at}).encode()},
		{(&logCheck{Kind: 3, Index: 12, Coins: []ecash.Hash{h(1)}}).encode(),
			(&logCheck{Kind: 3, Coins: []ecash.Hash{h(1)}, Merchant: 1001, Credited: eur, Answered: at.UnixMilli()}).encode(),
			(&logCheck{Kind: 9, Answered: at.UnixMilli()}).encode(),
			(&logCheck{Kind: logWithdraw, Coins: []ecash.Hash{h(1), h(1)}, Merchant: 1001, Credited: eur, Asked: at.UnixMilli()}).encode()},
		{(&purchaseRecord{Kind: echeck.KindGoods, Quote: []byte("quote"), EPO: []byte("epo"), ReplyKey: bytes.Repeat([]byte{1}, 32),
			Memo: "a song", Created: at.UTC(), State: "approved", Receipt: []byte("receipt"), Block: []byte("block")}).encode()},
	}
}

func FuzzDecodeWalletRecord(f *testing.F) {
	for i, recs := range walletRecords() {
		for _, r := range recs {
			f.Add(uint8(i), r)
			f.Add(uint8(i), r[:len(r)-1])
			f.Add(uint8(i), append(bytes.Clone(r), 0, 0, 0, 0))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		c := walletCodecs[int(which)%len(walletCodecs)]
		v, err := c.decode(b)
		if err != nil {
			if !errors.Is(err, ecash.ErrMalformed) {
				t.Fatalf("%s: error %v does not wrap ecash.ErrMalformed", c.name, err)
			}
			return
		}
		again := c.encode(v)
		if !bytes.Equal(again, b) && !(c.trailing && len(again) < len(b) && bytes.HasPrefix(b, again)) {
			t.Fatalf("%s: non-canonical: %x re-encodes to %x", c.name, b, again)
		}
		v2, err := c.decode(again)
		if err != nil {
			t.Fatalf("%s: the re-encoding does not decode: %v", c.name, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("%s: decodes to %+v, its re-encoding to %+v", c.name, v, v2)
		}
	})
}
