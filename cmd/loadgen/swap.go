package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The swap scenario: change. A wallet gives n coins to the bank for blind
// signatures on n new planchets of the same denomination (ecash.SwapRequest,
// docs/PROTOCOL.md §4a): each input signs a swap permission over the
// outputs' hash, the bank verifies every input coin and permission, marks
// the inputs spent, blind-signs the outputs and logs the swap, in one
// commit.

// swapNext swaps the wallet's last n coins for n new ones, which go back
// into its purse: the coins a wallet stocks before the timed phase are
// swapped again and again, as a wallet renewing its coins would. It returns
// errExhausted if the wallet holds fewer than n coins.
func (w *simWallet) swapNext(ctx context.Context, n int) error {
	if len(w.coins) < n {
		return errExhausted
	}
	in := w.coins[len(w.coins)-n:]
	out, err := w.swap(ctx, in)
	if err != nil {
		return err
	}
	copy(in, out)
	return nil
}

// swap swaps inputs for as many new coins of the same denomination, as a
// wallet does: derive and blind the outputs (CS: after the first round),
// sign a swap permission with each input's coin key, send the request,
// unblind and verify the signatures.
func (w *simWallet) swap(ctx context.Context, inputs []heldCoin) ([]heldCoin, error) {
	n := len(inputs)
	f, err := w.newPlanchets(ctx, n)
	if err != nil {
		return nil, err
	}
	coins := make([]ecash.Coin, n)
	keys := make([]ed25519.PrivateKey, n)
	values := make([]ecash.Amount, n)
	for i, c := range inputs {
		coins[i], keys[i], values[i] = c.Coin, c.Key, w.denom.Value
	}
	req, err := ecash.NewSwapRequest(coins, keys, values, f.planchets, time.Now())
	if err != nil {
		return nil, err
	}
	resp, err := w.bank.Swap(ctx, &pb.SwapRequest{Body: req.Body()})
	if err != nil {
		return nil, fmt.Errorf("swap: %w", rateLimitHint(err, roleBank))
	}
	out, err := w.finish(f, resp.BlindSignatures)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	return out, nil
}

// newSwapLimitOp returns the cryptography of one swap of n coins for n,
// every step the wallet and the bank do, in order, without the network and
// the store: the wallet derives, blinds (CS: after the bank's first round)
// and signs a swap permission per input; the bank verifies each input's
// coin signature and permission and blind-signs each output; the wallet
// unblinds and verifies. The input coins are made beforehand and reused
// (nothing caches a verification).
//
// The outputs' hash, which every permission covers, is computed once per
// swap here; ecash.SwapRequest.Permission, which the wallet and the bank
// call once per input, recomputes it each time (a cost quadratic in n, small
// at 4 coins).
func newSwapLimitOp(kit *cryptoKit, n int) (limitOp, error) {
	inputs, err := mintCoins(kit, n)
	if err != nil {
		return nil, err
	}
	out, err := newIssued(kit, n)
	if err != nil {
		return nil, err
	}
	value := kit.denom.Value
	return func(pt *partyTimes) error {
		sw := startStopwatch()
		if err := out.firstRound(&sw, pt); err != nil {
			return err
		}
		// Wallet: blind the outputs, sign a swap permission per input.
		req := &ecash.SwapRequest{CreatedAt: time.UnixMilli(time.Now().UnixMilli()), Outputs: make([]ecash.Planchet, n), Inputs: make([]ecash.SwapInput, n)}
		if err := out.blind(req.Outputs); err != nil {
			return err
		}
		outputs := req.OutputsHash()
		for i, c := range inputs {
			dp := ecash.DepositPermission{Coin: c.Coin, PaymentHash: outputs, MerchantAccount: ecash.SwapAccount, Value: value, Timestamp: req.CreatedAt}
			req.Inputs[i] = ecash.SwapInput{Coin: c.Coin, CoinSig: ed25519.Sign(c.Key, dp.Body())}
		}
		body := req.Body()
		sw.lap(&pt.wallet)
		// Bank: decode, verify every input coin and its permission, lock
		// the CS nonces, blind-sign every output (recorded by the hashes
		// of their blinded messages).
		got, err := ecash.DecodeSwapRequest(body)
		if err != nil {
			return err
		}
		_ = ecash.HashOf(body)
		perms := make([]ecash.DepositPermission, len(got.Inputs))
		gotOutputs := got.OutputsHash()
		for i := range perms {
			perms[i] = got.PermissionOver(gotOutputs, i, value)
			_ = perms[i].Coin.ID()
		}
		if err := kit.verifyBatch(perms); err != nil {
			return err
		}
		for i := range perms {
			_ = perms[i].Encode()
		}
		for _, p := range got.Outputs {
			_ = ecash.HashOf(p.Blinded)
		}
		if err := out.sign(got.Outputs); err != nil {
			return err
		}
		sw.lap(&pt.bank)
		return out.unblind(&sw, pt)
	}, nil
}
