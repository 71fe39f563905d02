package bank

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// TestKeyFileOneKeyTwoDenominations: a key file listing one denomination
// key under two values is refused, for either cipher. For CS the signer
// keeps its nonce records per denomination, so it could answer one nonce
// twice, once under each, and reveal the key.
func TestKeyFileOneKeyTwoDenominations(t *testing.T) {
	for _, cipher := range []ecash.Cipher{ecash.CipherCS, ecash.CipherRSA} {
		t.Run(cipher.String(), func(t *testing.T) {
			k, err := GenerateKeys(KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 1}}, Cipher: cipher,
				WithdrawPeriod: time.Hour, DepositPeriod: 2 * time.Hour}, time.Now(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			b, err := k.marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseKeys(b); err != nil {
				t.Fatalf("the file as made: %v", err)
			}
			var f map[string]any
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			denoms := f["denominations"].([]any)
			twin := map[string]any{}
			for key, v := range denoms[0].(map[string]any) {
				twin[key] = v
			}
			twin["value"] = "EUR:0.02"
			f["denominations"] = append(denoms, twin)
			if b, err = json.Marshal(f); err != nil {
				t.Fatal(err)
			}
			if _, err := parseKeys(b); err == nil || !strings.Contains(err.Error(), "two denominations") {
				t.Fatalf("one key under EUR:0.01 and EUR:0.02: %v, want it refused", err)
			}
		})
	}
}
