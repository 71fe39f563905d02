package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// heldCoin is a coin with its private key, held in memory.
type heldCoin struct {
	Coin ecash.Coin
	Key  ed25519.PrivateKey
}

// simWallet is one simulated wallet: a lean protocol client with its own
// bank account, account key and TLS connections, holding its coins in
// memory. It does every cryptographic step a real wallet does (derive,
// blind, unblind and verify, sign permissions, seal, verify the merchant's
// request and the bank's receipt) but keeps no store: loadgen measures the
// bank and the merchant, not the wallet's disk. Not safe for concurrent use.
type simWallet struct {
	id       int
	seed     []byte
	acctKey  ed25519.PrivateKey
	account  uint64
	next     uint64 // next planchet index
	ks       *ecash.KeySet
	denom    ecash.Denomination
	bank     pb.BankClient
	merchant pb.MerchantClient      // nil unless the scenario pays or writes checks
	mAdmin   pb.MerchantAdminClient // that merchant's admin service: orders
	conns    []*grpc.ClientConn

	// The till the check scenario pays (learnMerchant).
	merchantAccount uint64
	merchantPub     ed25519.PublicKey

	coins  []heldCoin
	orders []simOrder
}

// simOrder is an order to pay: its id, and its payment URI when the
// wallet pays from the URI (--pay-request uri).
type simOrder struct{ id, uri string }

// errExhausted says a wallet has no coins or orders left for an operation.
var errExhausted = errors.New("out of pre-withdrawn coins or orders")

// newSimWallet creates wallet id: a fresh seed, an account opened and
// funded by the bank's admin service, TLS connections pinned to the bank's
// (and merchant's) certificate, and the bank's verified key set.
func newSimWallet(ctx context.Context, id int, env *environment) (*simWallet, error) {
	w := &simWallet{id: id, seed: make([]byte, 32)}
	if _, err := rand.Read(w.seed); err != nil {
		return nil, err
	}
	var err error
	if w.acctKey, err = ecash.DeriveAccountKey(w.seed); err != nil {
		return nil, err
	}
	acct, err := env.bankAdmin.OpenAccount(ctx, &pb.OpenAccountRequest{
		Name: fmt.Sprintf("loadgen wallet %d", id), PublicKey: w.acctKey.Public().(ed25519.PublicKey),
	})
	if err != nil {
		return nil, fmt.Errorf("opening an account: %w", err)
	}
	w.account = acct.Account
	funds := ecash.Amount{Currency: env.coins.Value.Currency, Value: walletFunds}.String()
	if _, err := env.bankAdmin.Credit(ctx, &pb.CreditRequest{Account: w.account, Amount: funds, Memo: "loadgen"}); err != nil {
		return nil, fmt.Errorf("funding the account: %w", err)
	}
	b := env.bankFor(id)
	conn, err := transport.Dial(b.addr, b.tls, fromAddress(id))
	if err != nil {
		return nil, err
	}
	w.conns = append(w.conns, conn)
	w.bank = pb.NewBankClient(conn)
	if m, admin, ok := env.merchantFor(id); ok {
		w.mAdmin = admin
		mc, err := transport.Dial(m.addr, m.tls, fromAddress(id))
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, mc)
		w.merchant = pb.NewMerchantClient(mc)
	}
	// Fetching the key set also opens the TLS connection to the bank.
	resp, err := w.bank.GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("fetching the key set: %w", err)
	}
	if w.ks, err = ecash.DecodeKeySet(resp.SignedKeyset, nil); err != nil {
		w.close()
		return nil, err
	}
	if w.denom, err = w.ks.Denomination(env.coins.ID); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// acctPub is the wallet's account key: the customer key of its checks.
func (w *simWallet) acctPub() ed25519.PublicKey { return w.acctKey.Public().(ed25519.PublicKey) }

// fromAddress makes wallet id connect from its own loopback address
// (127.0.1.2, 127.0.1.3, ...), as real wallets come from their own
// addresses: servers limit calls per peer address, and loadgen must not
// measure that limit. Where only 127.0.0.1 exists (not Linux) it falls back
// to the default source address.
func fromAddress(id int) grpc.DialOption {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+id/250), byte(2+id%250))}
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: local}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil && errors.Is(err, syscall.EADDRNOTAVAIL) {
			d.LocalAddr = nil
			c, err = d.DialContext(ctx, "tcp", addr)
		}
		return c, err
	})
}

// rateLimitHint explains a refusal by a server's rate limits. A merchant
// node keeps its limit on (node.DefaultPerPeer calls a second per address,
// and a payment is two calls): one wallet paying back to back can exceed
// it. The bank loadgen starts has none; a bankd it runs against
// (--bank-data) has them unless started without.
func rateLimitHint(err error, role string) error {
	if status.Code(err) != codes.ResourceExhausted {
		return err
	}
	if role == roleBank {
		return fmt.Errorf("%w (the bank's rate limits refused it: start the bankd for the test with --rate-limit-per-peer off --rate-limit-per-account off)", err)
	}
	return fmt.Errorf("%w (the merchant limits each address to %d calls a second, two per payment: spread the load over more wallets with --concurrency)", err, node.DefaultPerPeer)
}

// walletFunds is what each wallet's account is credited with, in the
// currency's smallest unit: far more than any run can withdraw.
const walletFunds = 100_000_000_000

func (w *simWallet) close() {
	if w == nil {
		return
	}
	for _, c := range w.conns {
		c.Close()
	}
}

// fresh is a batch of new planchets, blinded, with what unblinds them.
type fresh struct {
	secrets   []ecash.PlanchetSecret
	planchets []ecash.Planchet
	states    []ecash.BlindState
}

// newPlanchets derives n planchets of the wallet's denomination, runs the
// first round for CS (PrepareWithdraw) and blinds them: what a withdrawal
// and a swap's outputs both begin with.
func (w *simWallet) newPlanchets(ctx context.Context, n int) (*fresh, error) {
	d := w.denom
	f := &fresh{secrets: make([]ecash.PlanchetSecret, n), planchets: make([]ecash.Planchet, n), states: make([]ecash.BlindState, n)}
	for i := range f.secrets {
		var err error
		if f.secrets[i], err = ecash.DerivePlanchet(w.seed, w.next); err != nil {
			return nil, err
		}
		w.next++
	}
	prepared := make([][]byte, n)
	if f.secrets[0].PrepareRequest(d) != nil {
		req := &pb.PrepareWithdrawRequest{Items: make([]*pb.PrepareWithdrawRequest_Item, n)}
		for i, s := range f.secrets {
			req.Items[i] = &pb.PrepareWithdrawRequest_Item{Denomination: d.ID[:], Request: s.PrepareRequest(d)}
		}
		resp, err := w.bank.PrepareWithdraw(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("first round: %w", rateLimitHint(err, roleBank))
		}
		if len(resp.Answers) != n {
			return nil, fmt.Errorf("first round: %d answers for %d planchets", len(resp.Answers), n)
		}
		prepared = resp.Answers
	}
	for i, s := range f.secrets {
		var err error
		if f.planchets[i], f.states[i], err = s.Blind(d, prepared[i]); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// finish unblinds and verifies the bank's blind signatures on f.
func (w *simWallet) finish(f *fresh, sigs [][]byte) ([]heldCoin, error) {
	if len(sigs) != len(f.secrets) {
		return nil, fmt.Errorf("%d signatures for %d planchets", len(sigs), len(f.secrets))
	}
	coins := make([]heldCoin, len(sigs))
	for i, s := range f.secrets {
		sig, err := f.states[i].Unblind(sigs[i])
		if err != nil {
			return nil, fmt.Errorf("the bank's signature on planchet %d: %w", i, err)
		}
		coins[i] = heldCoin{Coin: ecash.Coin{Denom: w.denom.ID, Pub: s.CoinPub(), Sig: sig}, Key: s.CoinKey}
	}
	return coins, nil
}

// withdraw withdraws n coins in one request, as a wallet does: derive the
// planchets, run the first round for CS, blind, sign the request with the
// account key, send it, unblind and verify the signatures.
func (w *simWallet) withdraw(ctx context.Context, n int) ([]heldCoin, error) {
	f, err := w.newPlanchets(ctx, n)
	if err != nil {
		return nil, err
	}
	req := &ecash.WithdrawRequest{Account: w.account, CreatedAt: time.Now(), Planchets: f.planchets}
	if _, err := rand.Read(req.Nonce[:]); err != nil {
		return nil, err
	}
	amount, err := w.ks.WithdrawAmount(req)
	if err != nil {
		return nil, err
	}
	resp, err := w.bank.Withdraw(ctx, &pb.WithdrawRequest{Body: req.Body(), AccountSig: ecash.SignWithdraw(w.acctKey, req, amount)})
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", rateLimitHint(err, roleBank))
	}
	coins, err := w.finish(f, resp.BlindSignatures)
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	return coins, nil
}

// stock withdraws n coins into the wallet, in requests of at most
// wallet.MaxPlanchetsPerRequest, calling done after each request.
func (w *simWallet) stock(ctx context.Context, n int, done func(coins int)) error {
	for n > 0 {
		k := min(n, wallet.MaxPlanchetsPerRequest)
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		got, err := w.withdraw(cctx, k)
		cancel()
		if err != nil {
			return err
		}
		w.coins = append(w.coins, got...)
		n -= k
		done(k)
	}
	return nil
}

// payNext pays the wallet's next order with n of its coins, or returns
// errExhausted if it has too few left.
func (w *simWallet) payNext(ctx context.Context, n int) error {
	if len(w.orders) == 0 || len(w.coins) < n {
		return errExhausted
	}
	order := w.orders[0]
	w.orders = w.orders[1:]
	coins := w.coins[len(w.coins)-n:]
	w.coins = w.coins[:len(w.coins)-n]
	return w.pay(ctx, order, coins)
}

// pay pays an order as a wallet does: fetch the payment request from the
// merchant (or parse it from the order's payment URI) and verify it, sign a
// deposit permission per coin, seal the payment to the bank, hand it to the
// merchant (which deposits it at the bank and records the order paid) and
// verify the bank's receipt.
func (w *simWallet) pay(ctx context.Context, order simOrder, coins []heldCoin) error {
	var o *ecash.PaymentOffer
	if order.uri != "" {
		var err error
		if o, err = ecash.ParsePaymentURI(order.uri); err != nil {
			return err
		}
	} else {
		resp, err := w.merchant.GetPaymentRequest(ctx, &pb.GetPaymentRequestRequest{OrderId: order.id})
		if err != nil {
			return fmt.Errorf("payment request: %w", rateLimitHint(err, roleMerchant))
		}
		o = &ecash.PaymentOffer{Request: resp.PaymentRequest, MerchantSig: resp.MerchantSig, Summary: resp.Summary}
	}
	now := time.Now()
	offer, err := wallet.VerifyOffer(w.ks, o, now)
	if err != nil {
		return err
	}
	if offer.Request.OrderID != order.id {
		return fmt.Errorf("payment request for order %q, want %q", offer.Request.OrderID, order.id)
	}
	cs := make([]ecash.Coin, len(coins))
	keys := make([]ed25519.PrivateKey, len(coins))
	values := make([]ecash.Amount, len(coins))
	for i, c := range coins {
		cs[i], keys[i], values[i] = c.Coin, c.Key, w.denom.Value
	}
	payment, err := ecash.NewPayment(offer.Request, cs, keys, values, now)
	if err != nil {
		return err
	}
	sealed, err := ecash.SealPayment(w.ks.HPKEPub, offer.Request, payment)
	if err != nil {
		return err
	}
	paid, err := w.merchant.Pay(ctx, &pb.PayRequest{OrderId: order.id, SealedPayment: sealed})
	if err != nil {
		return fmt.Errorf("pay: %w", rateLimitHint(err, roleMerchant))
	}
	rcpt, err := ecash.DecodeDepositReceipt(paid.Receipt)
	if err != nil {
		return err
	}
	if err := rcpt.Verify(w.ks, offer.Request); err != nil {
		return err
	}
	if len(rcpt.Coins) != len(cs) {
		return fmt.Errorf("receipt for %d coins, paid %d", len(rcpt.Coins), len(cs))
	}
	for i, c := range cs {
		if rcpt.Coins[i] != c.ID() {
			return fmt.Errorf("receipt names other coins")
		}
	}
	return nil
}
