package wallet

import (
	"reflect"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// TestLogCheckEncoding: each layout a build wrote decodes as written, and
// a check's answer time (no merchant before it) and its request's are
// kept: records of older builds, without them, keep waiting rather than
// accuse the bank.
func TestLogCheckEncoding(t *testing.T) {
	coin := ecash.Hash{1}
	for name, c := range map[string]logCheck{
		"key set":                {Kind: logKeySet},
		"swap":                   {Kind: logSwap, Index: 7, Coins: []ecash.Hash{coin}},
		"deposit, older build":   {Kind: logDeposit, Coins: []ecash.Hash{coin}, Merchant: 3, Credited: ecash.MustParseAmount("EUR:1.00")},
		"deposit":                {Kind: logDeposit, Coins: []ecash.Hash{coin}, Merchant: 3, Credited: ecash.MustParseAmount("EUR:1.00"), Answered: 1700000000000},
		"check":                  {Kind: logEPOApproved, Answered: 1700000000000},
		"check, older build":     {Kind: logEPODeclined},
		"deposit, merchant only": {Kind: logDeposit, Merchant: 3, Credited: ecash.MustParseAmount("EUR:0.01")},
		"check answered at 1 ms": {Kind: logEPODeclined, Answered: 1},
		"deposit, asked":         {Kind: logDeposit, Coins: []ecash.Hash{coin}, Merchant: 3, Credited: ecash.MustParseAmount("EUR:1.00"), Answered: 1700000000000, Asked: 1700000000001},
		"check, asked":           {Kind: logEPOApproved, Answered: 1700000000000, Asked: 1700000000001},
		// A receipt the bank dated at the epoch: its request's time still
		// bounds it.
		"check answered at the epoch": {Kind: logEPOApproved, Asked: 1700000000001},
		// A withdrawal's answer carries no date: its request's alone.
		"withdrawal": {Kind: logWithdraw, Coins: []ecash.Hash{coin, coin}, Merchant: 3, Credited: ecash.MustParseAmount("EUR:2.00"), Asked: 1700000000001},
	} {
		got, err := decodeLogCheck(c.encode())
		if err != nil || !reflect.DeepEqual(*got, c) {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, c)
		}
	}
}
