package main

// Running against a bank (and merchant) loadgen did not start: "bankd serve"
// and "merchantd serve" processes, found through the addresses.json each
// writes into its data directory (--bank-data, --merchant-data).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// endpoint is a server's public address and how to trust it.
type endpoint struct {
	addr string
	tls  transport.ClientConfig
}

// daemon is a bankd or merchantd process loadgen runs against, whose CPU
// time it reads from /proc over the timed phase.
type daemon struct {
	role string // roleBank or roleMerchant
	pid  int
}

// cpu is the daemon's user and system CPU time so far, or false if it
// cannot be read (not Linux, or the process is gone).
func (d daemon) cpu() (time.Duration, bool) {
	_, ticks, ok := procStat(d.pid)
	// USER_HZ is 100 on every Linux platform Go supports.
	return time.Duration(ticks) * 10 * time.Millisecond, ok
}

// daemonTimes reads every daemon's CPU time; nil if any cannot be read.
func daemonTimes(ds []daemon) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		t, ok := d.cpu()
		if !ok {
			return nil
		}
		out[i] = t
	}
	return out
}

// attach reads the addresses.json of the daemon (what: "bank" or
// "merchant") serving from dir and dials its admin listener with its
// token. The admin listener must be the plaintext loopback one: loadgen
// does not present client certificates.
func attach(dir, what string) (*cli.ServeInfo, endpoint, *grpc.ClientConn, error) {
	info, err := cli.ReadAddresses(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, endpoint{}, nil, fmt.Errorf("no %s is serving from %s (no %s there): start it first", what, dir, cli.AddressesFile)
	}
	if err != nil {
		return nil, endpoint{}, nil, err
	}
	if info.AdminTLS {
		return nil, endpoint{}, nil, fmt.Errorf("the %s serving from %s requires client certificates on its admin listener; loadgen needs it on loopback with the token only", what, dir)
	}
	ep := endpoint{addr: info.Addr, tls: transport.ClientConfig{Pin: info.Fingerprint}}
	if !info.TLS {
		ep.tls = transport.ClientConfig{Plaintext: true}
	}
	tok, err := transport.ReadToken(info.TokenFile)
	if err != nil {
		return nil, endpoint{}, nil, fmt.Errorf("the %s's admin token: %w", what, err)
	}
	conn, err := transport.DialAdmin(info.AdminAddr, tok)
	if err != nil {
		return nil, endpoint{}, nil, err
	}
	return info, ep, conn, nil
}

// attachBank points env at the bankd serving from dir: its public
// endpoint, its admin service (to open and fund the wallets' accounts),
// its process (for its CPU) and, if it keeps a Pebble ledger in dir, that
// directory (for the bytes written per coin). It returns the bank's key
// set.
func attachBank(ctx context.Context, env *environment, dir string) (*ecash.KeySet, error) {
	info, ep, admin, err := attach(dir, "bank")
	if err != nil {
		return nil, err
	}
	env.conns = append(env.conns, admin)
	env.bankAdmin = pb.NewBankAdminClient(admin)
	env.banks = []endpoint{ep}
	env.daemons = append(env.daemons, daemon{role: roleBank, pid: info.PID})
	if st, err := os.Stat(filepath.Join(dir, "ledger")); err == nil && st.IsDir() {
		env.ledger = filepath.Join(dir, "ledger")
	}
	conn, err := transport.Dial(ep.addr, ep.tls)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := pb.NewBankClient(conn).GetKeys(cctx, &pb.GetKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("fetching the key set of the bank at %s: %w", ep.addr, err)
	}
	return ecash.DecodeKeySet(resp.SignedKeyset, nil)
}

// attachMerchant points env at the merchantd serving from dir, which must
// deposit at the bank env is attached to.
func attachMerchant(env *environment, dir string) error {
	info, ep, admin, err := attach(dir, "merchant")
	if err != nil {
		return err
	}
	env.conns = append(env.conns, admin)
	env.merchants = []endpoint{ep}
	env.mAdmins = []pb.MerchantAdminClient{pb.NewMerchantAdminClient(admin)}
	env.daemons = append(env.daemons, daemon{role: roleMerchant, pid: info.PID})
	return nil
}

// coinDenomination picks the denomination of cipher the wallets withdraw
// and spend at a running bank: issued now, free of fees (loadgen swaps n
// coins for n of the same value and pays orders of n coins' value), the
// smallest such.
func coinDenomination(ks *ecash.KeySet, cipher ecash.Cipher, now time.Time) (ecash.Denomination, error) {
	var ok []ecash.Denomination
	for _, d := range ks.Withdrawable(now) {
		if d.Key.Cipher() == cipher && d.Fees.IsZero() && now.Before(d.DepositEnd) {
			ok = append(ok, d)
		}
	}
	if len(ok) == 0 {
		return ecash.Denomination{}, fmt.Errorf("the bank issues no %s denomination free of fees now (loadgen needs one: e.g. bankd serve --denominations %s:0.01/%s)", cipher, ks.Currency, cipher)
	}
	return slices.MinFunc(ok, func(a, b ecash.Denomination) int { return cmp.Compare(a.Value.Value, b.Value.Value) }), nil
}
