package ecash_test

import (
	"crypto/rand"
	"fmt"

	"github.com/blindbank/blindbank/ecash"
)

func ExampleParseAmount() {
	price, err := ecash.ParseAmount("EUR:12.5")
	if err != nil {
		panic(err)
	}
	fee := ecash.MustParseAmount("EUR:0.25")
	total, err := price.Add(fee)
	if err != nil {
		panic(err)
	}
	fmt.Println(price, total, total.Value)

	_, err = ecash.ParseAmount("EUR:1.234")
	fmt.Println(err)
	_, err = price.Add(ecash.MustParseAmount("USD:1"))
	fmt.Println(err)
	// Output:
	// EUR:12.50 EUR:12.75 1275
	// ecash: invalid amount: "EUR:1.234": want CUR:12.50
	// ecash: currency mismatch: EUR and USD
}

// The withdraw round trip: the wallet derives a planchet from its seed and
// blinds the coin key; the bank signs the blinded message without learning
// the coin key; the wallet unblinds and holds a coin anyone can verify.
func ExamplePlanchetSecret_Blind() {
	// Bank: a denomination key (generate once, publish in the key set).
	sk, err := ecash.RSAScheme{}.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	value := ecash.MustParseAmount("EUR:5")
	denom := ecash.Denomination{ID: ecash.DenominationID(value, sk.Public()), Value: value, Key: sk.Public()}

	// Wallet: derive planchet 0 from the wallet seed (persist the counter
	// first) and blind it. Blinding is deterministic from the planchet, so a
	// crashed wallet can blind again and get the same bytes.
	walletSeed := make([]byte, 32)
	if _, err := rand.Read(walletSeed); err != nil {
		panic(err)
	}
	ps, err := ecash.DerivePlanchet(walletSeed, 0)
	if err != nil {
		panic(err)
	}
	planchet, state, err := ps.Blind(denom, nil)
	if err != nil {
		panic(err)
	}

	// Bank: sign the blinded message (after checking the withdraw request).
	blindSig, err := sk.BlindSign(planchet.Blinded)
	if err != nil {
		panic(err)
	}

	// Wallet: unblind (this also checks the bank's signature) and keep the coin.
	sig, err := state.Unblind(blindSig)
	if err != nil {
		panic(err)
	}
	coin := ecash.Coin{Denom: denom.ID, Pub: ps.CoinPub(), Sig: sig}

	// Anyone with the key set: verify the coin.
	fmt.Println("coin verifies:", coin.Verify(denom.Key) == nil)
	decoded, err := ecash.DecodeCoin(coin.Encode())
	fmt.Println("encoding round trips:", err == nil && decoded.ID() == coin.ID())
	// Output:
	// coin verifies: true
	// encoding round trips: true
}
