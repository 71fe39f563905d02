package ecash_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"syscall"
	"testing"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"

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
//
// Besides ns/op (wall time) each benchmark reports cpu-ns/op, the process's
// CPU time per operation: on a machine shared with other work it barely
// moves, where ns/op grows with the load. With every core busy (the
// Parallel benchmarks) it is the CPU cost of one coin.

// processCPU is the process's CPU time so far (user + system, all threads).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU, deferred once the benchmark is set up (defer reportCPU(b)()),
// adds cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if d := processCPU() - start; d > 0 && b.N > 0 {
			b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
		}
	}
}

// benchCPU runs f as the sub-benchmark name, with cpu-ns/op.
func benchCPU(b *testing.B, name string, f func(b *testing.B)) {
	b.Run(name, func(b *testing.B) {
		defer reportCPU(b)()
		f(b)
	})
}

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
	benchCPU(b, "ServerDeriveR", func(b *testing.B) {
		for b.Loop() {
			sk.DeriveR(m.Nonce)
		}
	})
	benchCPU(b, "ServerSignBlinded", func(b *testing.B) {
		for b.Loop() {
			if _, err := sk.SignBlinded(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ServerSign", func(b *testing.B) { // both rounds: the bank's whole cost per coin
		for b.Loop() {
			sk.DeriveR(m.Nonce)
			if _, err := sk.BlindSign(m.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ClientBlind", func(b *testing.B) { // as wallets call it: from the bank's encoded answer
		prepared := r.Bytes()
		for b.Loop() {
			ecash.CSWithdrawNonce(ps.BlindSeed)
			if _, _, err := pk.Blind(ps.BlindSeed, prepared, ps.CoinPub()); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ClientUnblind", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Finalize(bs); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "Verify", func(b *testing.B) {
		for b.Loop() {
			if err := pk.Verify(ps.CoinPub(), sigBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ParsePublicKey", func(b *testing.B) {
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
	benchCPU(b, "ServerSign", func(b *testing.B) {
		for b.Loop() {
			if _, err := sk.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ClientBlind", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := pk.Blind(ps.BlindSeed, nil, ps.CoinPub()); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "ClientUnblind", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Unblind(bs); err != nil {
				b.Fatal(err)
			}
		}
	})
	benchCPU(b, "Verify", func(b *testing.B) {
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
	defer reportCPU(b)()
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
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sk.BlindSign(blinded); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRSABlindSign compares, in one run, the bank's RSA-2048 blind
// signing before and after it used the CRT: "circl" is circl's
// blindrsa.Signer (m^d mod N with math/big, blinded, checked), "crt" is
// ecash's (rsacrt.go: m^dP mod p and m^dQ mod q in constant time with
// filippo.io/bigmod, Garner, checked). "serial" is one core; "parallel"
// keeps every core busy (coins/s = 1e9 / ns/op).
func BenchmarkRSABlindSign(b *testing.B) {
	sk := testRSAKey(b, 0)
	k, err := x509.ParsePKCS8PrivateKey(sk.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	rsk := k.(*rsa.PrivateKey)
	m, err := rand.Int(rand.Reader, rsk.N)
	if err != nil {
		b.Fatal(err)
	}
	blinded := m.FillBytes(make([]byte, rsk.Size()))
	for _, s := range []struct {
		name string
		sign func([]byte) ([]byte, error)
	}{
		{"circl", blindrsa.NewSigner(rsk).BlindSign},
		{"crt", sk.BlindSign},
	} {
		benchCPU(b, s.name+"/serial", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.sign(blinded); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.sign(blinded); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
