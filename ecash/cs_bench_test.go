package ecash_test

import (
	"bytes"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// Side-by-side costs of the two blind-signature ciphers, per coin:
//
//	go test -bench . -run '^$' ./ecash/
//
// Server: everything the bank computes for one coin (CS: the first round,
// DeriveR, and the second, SignBlinded; RSA: BlindSign). Client: blinding
// (CS includes the checks on R0, R1) and unblinding (both verify the result).
// Verify: what a bank does per coin at deposit.

func benchCSSetup(b *testing.B) (*ecash.CSPrivateKey, ecash.PlanchetSecret, ecash.CSRValues, ecash.CSBlindedMessage, *ecash.CSBlindState, ecash.CSBlindSignature, ecash.CSSignature) {
	b.Helper()
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		b.Fatal(err)
	}
	ps, err := ecash.DerivePlanchet(seed(6), 0)
	if err != nil {
		b.Fatal(err)
	}
	r := sk.DeriveR(ecash.CSWithdrawNonce(ps.BlindSeed))
	m, st, err := sk.PublicKey().BlindWithR(ps.BlindSeed, r, ps.CoinPub())
	if err != nil {
		b.Fatal(err)
	}
	bs, err := sk.SignBlinded(m)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := st.Finalize(bs)
	if err != nil {
		b.Fatal(err)
	}
	return sk, ps, r, m, st, bs, sig
}

func BenchmarkCS(b *testing.B) {
	sk, ps, r, m, st, bs, sig := benchCSSetup(b)
	pk := sk.PublicKey()
	sigBytes := sig.Bytes()
	b.Run("ServerDeriveR", func(b *testing.B) {
		for b.Loop() {
			sk.DeriveR(m.Nonce)
		}
	})
	b.Run("ServerSignBlinded", func(b *testing.B) {
		for b.Loop() {
			if _, err := sk.SignBlinded(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ServerSign", func(b *testing.B) { // both rounds: the bank's whole cost per coin
		for b.Loop() {
			sk.DeriveR(m.Nonce)
			if _, err := sk.BlindSign(m.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ClientBlind", func(b *testing.B) {
		for b.Loop() {
			ecash.CSWithdrawNonce(ps.BlindSeed)
			if _, _, err := pk.BlindWithR(ps.BlindSeed, r, ps.CoinPub()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ClientUnblind", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Finalize(bs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if err := pk.Verify(ps.CoinPub(), sigBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParsePublicKey", func(b *testing.B) {
		enc := pk.Bytes()
		for b.Loop() {
			if _, err := ecash.ParseCSPublicKey(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("CS sizes: public key %d, first round %d+%d, blinded message %d, blind signature %d, coin signature %d bytes",
		len(pk.Bytes()), ecash.CSNonceSize, len(r.Bytes()), len(m.Bytes()), len(bs.Bytes()), len(sigBytes))
}

func BenchmarkRSA2048(b *testing.B) {
	sk := testRSAKey(b, 0)
	pk := sk.Public()
	ps, err := ecash.DerivePlanchet(seed(6), 0)
	if err != nil {
		b.Fatal(err)
	}
	blinded, st, err := pk.Blind(ps.BlindSeed, nil, ps.CoinPub())
	if err != nil {
		b.Fatal(err)
	}
	bs, err := sk.BlindSign(blinded)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := st.Unblind(bs)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ServerSign", func(b *testing.B) {
		for b.Loop() {
			if _, err := sk.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ClientBlind", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := pk.Blind(ps.BlindSeed, nil, ps.CoinPub()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ClientUnblind", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Unblind(bs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if err := pk.Verify(ps.CoinPub(), sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("RSA-2048 sizes: public key %d, blinded message %d, blind signature %d, coin signature %d bytes",
		len(pk.Bytes()), len(blinded), len(bs), len(sig))
}

// BenchmarkCSParallelServerSign is the bank's CS signing throughput with
// all cores busy (coins/s = 1e9 / ns/op).
func BenchmarkCSParallelServerSign(b *testing.B) {
	sk, _, _, m, _, _, _ := benchCSSetup(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sk.DeriveR(m.Nonce)
			if _, err := sk.SignBlinded(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRSA2048ParallelServerSign is the same for RSA-2048.
func BenchmarkRSA2048ParallelServerSign(b *testing.B) {
	sk := testRSAKey(b, 0)
	ps, err := ecash.DerivePlanchet(seed(6), 0)
	if err != nil {
		b.Fatal(err)
	}
	blinded, _, err := sk.Public().Blind(ps.BlindSeed, nil, ps.CoinPub())
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sk.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
	})
}
