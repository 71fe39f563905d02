package pebblestore

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// Fuzz target for every decoder of a stored record (codec.go): what a
// damaged or tampered ledger directory hands the store. Properties: no
// panic; a failure wraps errCorrupt; a record that decodes re-encodes to
// exactly its bytes (the encodings are canonical), but for an account's
// retired fields and the form of before without LastPosted
// (canonicalRecord); the re-encoding decodes to the same record.
// Run it with:
//
//	go test -run='^$' -fuzz=FuzzDecodeRecord -fuzztime=20s ./bank/pebblestore/

// canonicalRecord is b as the store writes what it decodes to: b itself,
// but for an account record, whose retired failure counts (16 bytes before
// LastPosted) are read and ignored, and written as zeros, and whose
// LastPosted a record of before lacks (written as the zero time).
func canonicalRecord(name string, v any, b []byte) []byte {
	if name != "account" {
		return b
	}
	var e enc
	e.time(v.(*account).LastPosted)
	out, tail := bytes.Clone(b), len(e.b)
	if len(out)+1 == len(encodeAccount(v.(*account))) && tail == 1 {
		tail = 0 // no LastPosted
	}
	clear(out[len(out)-tail-16 : len(out)-tail])
	if tail == 0 {
		out = append(out, 0)
	}
	return out
}

// recordCodec is one record type: decode, and encode of what it decoded.
type recordCodec struct {
	name   string
	decode func([]byte) (any, error)
	encode func(any) []byte
}

var recordCodecs = []recordCodec{
	{"account",
		func(b []byte) (any, error) { return decodeAccount(1000, b) },
		func(v any) []byte { return encodeAccount(v.(*account)) }},
	{"posting",
		func(b []byte) (any, error) { p, err := decodePosting(7, b); return &p, err },
		func(v any) []byte { return encodePosting(v.(*bank.Posting)) }},
	{"withdraw",
		func(b []byte) (any, error) { return decodeWithdraw(b) },
		func(v any) []byte { return encodeWithdraw(v.(*withdrawRecord)) }},
	{"issued",
		func(b []byte) (any, error) { return decodeIssued(b) },
		func(v any) []byte { return encodeIssued(v.(*issuedRecord)) }},
	{"coin",
		func(b []byte) (any, error) { return decodeCoin(b) },
		func(v any) []byte { return encodeCoin(v.(*coinRecord)) }},
	{"credit",
		func(b []byte) (any, error) { return decodeCredit(b) },
		func(v any) []byte { return encodeCredit(v.(*creditRecord)) }},
	{"refund",
		func(b []byte) (any, error) { return decodeRefund(b) },
		func(v any) []byte { return encodeRefund(v.(*refundRecord)) }},
	{"deposit",
		func(b []byte) (any, error) { return decodeDeposit(b) },
		func(v any) []byte { return encodeDeposit(v.(*depositRecord)) }},
	{"swap",
		func(b []byte) (any, error) { return decodeSwap(b) },
		func(v any) []byte { return encodeSwap(v.(*swapRecord)) }},
	{"ref",
		func(b []byte) (any, error) { return decodeRef(b) },
		func(v any) []byte { return encodeRef(v.(*refRecord)) }},
	{"check",
		func(b []byte) (any, error) { return decodeCheck(b) },
		func(v any) []byte { return encodeCheck(v.(*bank.CheckOutcome)) }},
	{"refusal",
		func(b []byte) (any, error) { return decodeRefusal(b) },
		func(v any) []byte { return encodeRefusal(v.(*refusalRecord)) }},
}

// fuzzRecords are valid records of each type (by index in recordCodecs),
// as the store writes them.
func fuzzRecords() [][][]byte {
	at := time.Unix(1_700_000_000, 123_456_789).UTC()
	h := func(c byte) ecash.Hash { return ecash.Hash(bytes.Repeat([]byte{c}, 32)) }
	acct := &account{Account: bank.Account{ID: 1000, Name: "alice", Key: bytes.Repeat([]byte{7}, 32), Merchant: true,
		Balance: 12345, Created: at, Limits: bank.Limits{PerTransaction: 500, PerDay: 2000}, SpentDay: 19675, SpentToday: 300,
		LastPosted: at.Add(time.Hour)}, NextSeq: 9}
	sys := &account{Account: bank.Account{ID: 1000, Name: "fees", Balance: -7}}
	return [][][]byte{
		{encodeAccount(acct), encodeAccount(sys), encodeAccount(sys)[:len(encodeAccount(sys))-1]},
		{encodePosting(&bank.Posting{Seq: 7, Time: at, Kind: "check", Amount: -150, Balance: 850, Memo: "a song",
			Counterparty: 1001, Ref: "EPO-1", Product: "song"}), encodePosting(&bank.Posting{Seq: 7})},
		{encodeWithdraw(&withdrawRecord{Account: 1000, Amount: 300, Sigs: [][]byte{{1, 2, 3}, bytes.Repeat([]byte{9}, 64)}}),
			encodeWithdraw(&withdrawRecord{})},
		{encodeIssued(&issuedRecord{Swap: true, Request: h(3), Pos: 2}), encodeIssued(&issuedRecord{Request: h(4)})},
		{encodeCoin(&coinRecord{Payment: h(5), Permission: []byte("permission")})},
		{encodeCredit(&creditRecord{Refunded: 100, Credit: 40})},
		{encodeRefund(&refundRecord{Payment: h(6), Merchant: 1001, Amount: 100, Receipt: []byte("receipt")})},
		{encodeDeposit(&depositRecord{Merchant: 1001, Amount: 700, Coins: []ecash.Hash{h(1), h(2)}, Receipt: []byte("receipt")})},
		{encodeSwap(&swapRecord{Value: 200, Coins: []ecash.Hash{h(1)}, Sigs: [][]byte{{1}, {2}}, Time: at}),
			encodeSwap(&swapRecord{})},
		{encodeRef(&refRecord{Account: 1000, Amount: 5000})},
		{encodeCheck(&bank.CheckOutcome{EPOHash: h(8), Outcome: bank.CheckApproved, Receipt: []byte("receipt"), Customer: 1000,
			Merchant: 1001, Amount: 150, NewBalance: 850, Record: []byte("record"), Time: at})},
		{encodeRefusal(&refusalRecord{Account: 1000, Refusal: bank.WithdrawRefusal{Code: codes.FailedPrecondition, Reason: "bank: insufficient funds"}, Time: at}),
			encodeRefusal(&refusalRecord{Refusal: bank.WithdrawRefusal{Code: codes.InvalidArgument}})},
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for i, recs := range fuzzRecords() {
		for _, r := range recs {
			f.Add(uint8(i), r)
			// A few corruptions: truncated, extended, a length made huge.
			f.Add(uint8(i), r[:len(r)/2])
			f.Add(uint8(i), append(bytes.Clone(r), 0))
			if len(r) > 4 {
				f.Add(uint8(i), append([]byte{0xff, 0xff, 0xff, 0xff}, r[4:]...))
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		c := recordCodecs[int(which)%len(recordCodecs)]
		v, err := c.decode(b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("%s: error %v does not wrap errCorrupt", c.name, err)
			}
			return
		}
		again := c.encode(v)
		if want := canonicalRecord(c.name, v, b); !bytes.Equal(again, want) {
			t.Fatalf("%s: non-canonical: %x re-encodes to %x", c.name, b, again)
		}
		v2, err := c.decode(again)
		if err != nil {
			t.Fatalf("%s: the re-encoding does not decode: %v", c.name, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("%s: decodes to %+v, re-encoded to %+v", c.name, v, v2)
		}
	})
}
