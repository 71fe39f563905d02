package main

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// The prefill (--prefill-spent N): before the timed phase, the bank's store
// is given the history of N coins withdrawn and spent, so that the phase
// runs against a store of that size. The records are written through the
// store interface (bank.Store), exactly as the bank's withdraw and deposit
// paths write them, audit-log entries included: one customer account
// credited with the coins' value; withdrawals of prefillWithdrawCoins
// coins each (blind signatures, the issued index, CS nonce locks); and
// deposits of prefillDepositCoins coins each to one merchant account
// (spent-coin records with their signed deposit permissions, the deposit
// record with its signed receipt, postings). Coin ids are SHA-256 of
// random 32-byte coin keys, as real ones are of real keys, so lookups see
// the same key distribution.
//
// What is not real is the cryptography inside the records: the blind
// signatures, the coins' signatures and the coins' signatures on their
// deposit permissions are random bytes of the right length (issuing and
// spending 10M real coins would take an hour of this machine's CPU). The
// store never checks them; an audit of such a log, or a double-spend proof
// built from a prefilled record, would not verify. The deposit receipts
// are real, signed by the bank's key.

// Sizes of the prefill's operations.
const (
	prefillWithdrawCoins = wallet.MaxPlanchetsPerRequest // a wallet's largest withdrawal
	prefillDepositCoins  = 8                             // payments of 8 coins, as in the pay tables
	prefillWorkers       = 32                            // operations in flight: the store commits them in groups
	maxPrefill           = 100_000_000
)

// prefillReport says what the prefill wrote and what it left.
type prefillReport struct {
	SpentCoins  int64   `json:"spent_coins"`
	Seconds     float64 `json:"seconds"`
	CoinsPerSec float64 `json:"coins_per_s"`
	// SettleSeconds is how long the store took to become idle after it:
	// Pebble's compactions, or PostgreSQL's VACUUM and CHECKPOINT.
	SettleSeconds float64 `json:"settle_s"`
	// StoreBytes is the store's size once settled: the bank's Pebble
	// directory, or the database (pg_database_size).
	StoreBytes int64 `json:"store_bytes"`
}

// prefill writes the history of n spent coins into the store of the first
// bank (every replica shares it), then waits for the store to settle.
func prefill(ctx context.Context, env *environment, n int64, prog *progress) (prefillReport, error) {
	rep := prefillReport{SpentCoins: n}
	store := env.bankNodes[0].Bank.Store()
	start := time.Now()

	// One coin issued for real gives the sizes of the records' fields.
	seed := make([]byte, 32)
	if _, err := crand.Read(seed); err != nil {
		return rep, err
	}
	tmpl, err := mintOne(env.denom, seed, 0)
	if err != nil {
		return rep, err
	}
	lock, err := env.denom.Private.LockKey(tmpl.blinded)
	if err != nil {
		return rep, err
	}
	value := env.denom.Value
	amount := func(coins int64) ecash.Amount {
		return ecash.Amount{Currency: value.Currency, Value: value.Value * uint64(coins)}
	}
	customerPub, customerKey, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return rep, err
	}
	merchantPub, _, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return rep, err
	}
	customer, err := store.OpenAccount(ctx, "loadgen prefill customer", customerPub, false, start)
	if err != nil {
		return rep, fmt.Errorf("prefill: %w", err)
	}
	merch, err := store.OpenAccount(ctx, "loadgen prefill merchant", merchantPub, true, start)
	if err != nil {
		return rep, fmt.Errorf("prefill: %w", err)
	}
	total := amount(n)
	if _, err := store.Credit(ctx, bank.CreditOp{
		Account: customer, Amount: int64(total.Value), Memo: "loadgen prefill", Time: start,
		Log: auditlog.Credit{Account: customer, Amount: total},
	}); err != nil {
		return rep, fmt.Errorf("prefill: %w", err)
	}

	signing, signingPub := env.keys.Signing, env.keys.Signing.Public().(ed25519.PublicKey)
	chunks := (n + prefillWithdrawCoins - 1) / prefillWithdrawCoins
	var next, done atomic.Int64
	// withdrawAndSpend writes chunk c: one withdrawal, then its coins'
	// deposits.
	withdrawAndSpend := func(ctx context.Context, rng *rand.ChaCha8, c int64) error {
		k := min(prefillWithdrawCoins, n-c*prefillWithdrawCoins)
		now := time.Now()
		w := bank.WithdrawOp{
			Account: customer, Amount: int64(amount(k).Value), Time: now,
			BlindSigs: make([][]byte, k), Blinded: make([]ecash.Hash, k),
		}
		fill(rng, w.RequestHash[:])
		for i := range k {
			w.BlindSigs[i] = randomBytes(rng, len(tmpl.blindSig))
			fill(rng, w.Blinded[i][:])
			if lock != nil {
				w.Locks = append(w.Locks, bank.NonceLock{Denom: env.denom.ID, Nonce: randomBytes(rng, len(lock)), Blinded: w.Blinded[i]})
			}
		}
		// The log holds the customer's signature over every debit, as the
		// bank's withdraw path has it.
		w.Log = auditlog.Withdraw{Account: customer, Amount: amount(k), RequestHash: w.RequestHash,
			AccountSig: ed25519.Sign(customerKey, ecash.WithdrawSignatureInput(customer, amount(k), w.RequestHash)),
			Issued:     []auditlog.DenomCount{{Denom: env.denom.ID, Value: value, Count: uint32(k)}}}
		if _, err := store.Withdraw(ctx, w); err != nil {
			return fmt.Errorf("prefill withdrawal: %w", err)
		}
		for k > 0 {
			m := min(k, prefillDepositCoins)
			k -= m
			now := time.Now()
			d := bank.DepositOp{Merchant: merch, Amount: int64(amount(m).Value), Time: now, Coins: make([]bank.SpentCoin, m)}
			fill(rng, d.PaymentHash[:])
			ids := make([]ecash.Hash, m)
			logged := make([]auditlog.SpentCoin, m)
			for i := range m {
				coin := ecash.Coin{Denom: env.denom.ID, Pub: randomBytes(rng, ed25519.PublicKeySize), Sig: randomBytes(rng, len(tmpl.coin.Coin.Sig))}
				dp := ecash.DepositPermission{
					Coin: coin, PaymentHash: d.PaymentHash, MerchantAccount: merch, Value: value, Timestamp: now,
					CoinSig: randomBytes(rng, ed25519.SignatureSize),
				}
				perm := dp.Encode()
				ids[i] = coin.ID()
				d.Coins[i] = bank.SpentCoin{ID: ids[i], Permission: perm}
				logged[i] = auditlog.SpentCoin{ID: ids[i], Denom: env.denom.ID, Value: value, PermissionHash: ecash.HashOf(perm)}
			}
			r := &ecash.DepositReceipt{PaymentHash: d.PaymentHash, MerchantAccount: merch, Total: amount(m), Coins: ids, DepositedAt: now, SignerPub: signingPub}
			r.Sig = ecash.SignBody(signing, r.Body())
			d.Receipt = r.Encode()
			d.Log = auditlog.Deposit{Merchant: merch, Amount: amount(m), PaymentHash: d.PaymentHash, Coins: logged}
			if _, err := store.Deposit(ctx, d); err != nil {
				return fmt.Errorf("prefill deposit: %w", err)
			}
			done.Add(m)
		}
		return nil
	}

	stop := make(chan struct{})
	go tick(stop, func() {
		d, secs := done.Load(), time.Since(start).Seconds()
		rate := float64(d) / secs
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(n-d)/rate) * time.Second).String()
		}
		prog.Status("prefill: %d/%d spent coins, %.0f coins/s, %s left", d, n, rate, eta)
	})
	errs := make([]error, prefillWorkers)
	var wg sync.WaitGroup
	labeled(ctx, roleClient, func(ctx context.Context) {
		for i := range prefillWorkers {
			wg.Go(func() {
				var s [32]byte
				crand.Read(s[:])
				rng := rand.NewChaCha8(s)
				for c := next.Add(1) - 1; c < chunks && ctx.Err() == nil; c = next.Add(1) - 1 {
					if err := withdrawAndSpend(ctx, rng, c); err != nil {
						errs[i] = err
						next.Store(chunks) // stop the others
						return
					}
				}
			})
		}
		wg.Wait()
	})
	close(stop)
	prog.Clear()
	for _, err := range errs {
		if err != nil {
			return rep, err
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.CoinsPerSec = float64(n) / rep.Seconds
	prog.Note("prefill: %d spent coins in %.0fs (%.0f coins/s)", n, rep.Seconds, rep.CoinsPerSec)

	t0 := time.Now()
	prog.Status("prefill: waiting for the store to settle ...")
	err = settle(ctx, env)
	prog.Clear()
	if err != nil {
		return rep, err
	}
	rep.SettleSeconds = time.Since(t0).Seconds()
	if env.pg != nil {
		s, err := env.pg.snapshot(ctx)
		if err != nil {
			return rep, err
		}
		rep.StoreBytes = s.dbBytes
	} else if rep.StoreBytes, err = dirSize(env.ledger); err != nil {
		return rep, err
	}
	prog.Note("prefill: store settled in %.0fs, %.2f GiB", rep.SettleSeconds, float64(rep.StoreBytes)/(1<<30))
	return rep, nil
}

// settle waits until the bank's store is idle: Pebble's compactions done,
// or PostgreSQL vacuumed and checkpointed.
func settle(ctx context.Context, env *environment) error {
	if env.pg != nil {
		return env.pg.settle(ctx)
	}
	if err := waitIdle(ctx, processCPU, settleIdle, time.Second, maxSettle); err != nil {
		return fmt.Errorf("the store did not settle: %w (Pebble still compacting?)", err)
	}
	return nil
}

// Settling: the process counts as idle (its Pebble compactions done) once
// it has used under settleCores of CPU for settleIdle in a row.
const (
	settleIdle  = 3 * time.Second
	settleCores = 0.05
	maxSettle   = 20 * time.Minute
)

// waitIdle waits until cpu, a reading of CPU time, has grown by under
// settleCores of a core for idle in a row, looking every step, or fails
// after limit.
func waitIdle(ctx context.Context, cpu func() (time.Duration, error), idle, step, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	quiet := time.Duration(0)
	prev, err := cpu()
	if err != nil {
		return err
	}
	for quiet < idle {
		if time.Now().After(deadline) {
			return fmt.Errorf("still busy after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
		now, err := cpu()
		if err != nil {
			return err
		}
		if (now - prev).Seconds() < settleCores*step.Seconds() {
			quiet += step
		} else {
			quiet = 0
		}
		prev = now
	}
	return nil
}

// fill and randomBytes make the records' random fields, from a fast
// generator seeded from crypto/rand.
func fill(rng *rand.ChaCha8, b []byte) { rng.Read(b) }

func randomBytes(rng *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}
