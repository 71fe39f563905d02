package main

// Running against a bank (and merchant) loadgen did not start: "bankd serve"
// and "merchantd serve" processes, found through the addresses.json each
// writes into its data directory (--bank-data, --merchant-data).

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
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

// profiler is a daemon's admin listener, from which loadgen fetches a CPU
// profile of the timed phase (with --cpuprofile).
type profiler struct {
	role, addr, token string
}

// profileDaemons asks every profiler for a CPU profile of the next d (whole
// seconds, at most node.MaxProfileSeconds) and returns a function that
// waits for them and writes each to base.bankd or base.merchantd, returning
// the files written and a note on any that failed.
func profileDaemons(ctx context.Context, ps []profiler, d time.Duration, base string) func() ([]string, string) {
	secs := min(int(math.Ceil(d.Seconds())), node.MaxProfileSeconds)
	type result struct {
		body []byte
		err  error
	}
	results := make([]chan result, len(ps))
	for i, p := range ps {
		results[i] = make(chan result, 1)
		go func() {
			body, err := fetchProfile(ctx, p, secs)
			results[i] <- result{body, err}
		}()
	}
	return func() ([]string, string) {
		var files, failed []string
		for i, p := range ps {
			r := <-results[i]
			name := base + "." + roleName(p.role)
			if r.err == nil {
				r.err = os.WriteFile(name, r.body, 0o644)
			}
			if r.err != nil {
				failed = append(failed, fmt.Sprintf("no CPU profile of the %s: %v", roleName(p.role), r.err))
				continue
			}
			files = append(files, name)
		}
		return files, strings.Join(failed, "; ")
	}
}

// fetchProfile takes a CPU profile of secs seconds from the daemon's admin
// listener.
func fetchProfile(ctx context.Context, p profiler, secs int) ([]byte, error) {
	client, base, err := transport.AdminHTTP(p.addr, transport.ClientConfig{})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+node.ProfilePath+"?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return nil, err
	}
	transport.SetToken(req, p.token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// maxProfileBytes bounds a profile read from a daemon.
const maxProfileBytes = 64 << 20

// cpu is the daemon's user and system CPU time so far, or false if it
// cannot be read (not Linux, or the process is gone).
func (d daemon) cpu() (time.Duration, bool) {
	_, ticks, ok := procStat(d.pid)
	return clockTicks(ticks), ok
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
// "merchant") serving from dir, refuses what loadgen cannot drive, and
// dials its admin listener with its token. The admin listener must be the
// plaintext loopback one, and no public call may need a client
// certificate: loadgen presents none.
func attach(dir, what string) (*cli.ServeInfo, endpoint, *grpc.ClientConn, string, error) {
	info, err := cli.ReadAddresses(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, endpoint{}, nil, "", fmt.Errorf("no %s is serving from %s (no %s there): start it first", what, dir, cli.AddressesFile)
	}
	if err != nil {
		return nil, endpoint{}, nil, "", err
	}
	if info.AdminTLS {
		return nil, endpoint{}, nil, "", fmt.Errorf("the %s serving from %s requires client certificates on its admin listener; loadgen needs it on loopback with the token only", what, dir)
	}
	if info.ClientAuth != "" {
		return nil, endpoint{}, nil, "", fmt.Errorf("the %s serving from %s requires client certificates (client_auth %s); loadgen presents none", what, dir, info.ClientAuth)
	}
	ep := endpoint{addr: info.Addr, tls: transport.ClientConfig{Pin: info.Fingerprint}}
	if !info.TLS {
		ep.tls = transport.ClientConfig{Plaintext: true}
	}
	tok, err := transport.ReadToken(info.TokenFile)
	if err != nil {
		return nil, endpoint{}, nil, "", fmt.Errorf("the %s's admin token: %w", what, err)
	}
	conn, err := transport.DialAdmin(info.AdminAddr, tok)
	if err != nil {
		return nil, endpoint{}, nil, "", err
	}
	return info, ep, conn, tok, nil
}

// addDaemon counts the CPU of the daemon described by info, if its PID is
// the process listening on its address (a stale addresses.json, left by a
// daemon killed without cleanup, may name a PID since reused; a daemon in
// a container writes a PID of its own namespace); otherwise it says why
// the report lacks it.
func (e *environment) addDaemon(role string, info *cli.ServeInfo, rep *report) {
	if !listens(info.PID, info.Addr) {
		rep.CPU.addNote(fmt.Sprintf("no CPU figure for the %s: PID %d, from its %s, is not a process of this machine listening on %s", roleName(role), info.PID, cli.AddressesFile, info.Addr))
		return
	}
	e.daemons = append(e.daemons, daemon{role: role, pid: info.PID})
}

func roleName(role string) string {
	if role == roleBank {
		return "bankd"
	}
	return "merchantd"
}

// listens reports whether process pid holds a TCP socket listening on
// addr's port (Linux: /proc/net/tcp and tcp6 map the listening sockets to
// inodes, /proc/PID/fd names the sockets the process holds).
func listens(pid int, addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	if err != nil || pid <= 0 {
		return false
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return false
	}
	sockets := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// sl local_address rem_address st ... inode: state 0A is LISTEN.
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if v, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && v == port {
				sockets["socket:["+f[9]+"]"] = true
			}
		}
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil || len(sockets) == 0 {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name()); err == nil && sockets[l] {
			return true
		}
	}
	return false
}

// attachBank points env at the bankd serving from dir: its public
// endpoint, its admin service (to open and fund the wallets' accounts),
// its process (for its CPU) and, if it keeps a Pebble ledger in dir, that
// directory (for the bytes written per coin). It returns the bank's key
// set.
func attachBank(ctx context.Context, env *environment, dir string, rep *report) (*ecash.KeySet, error) {
	info, ep, admin, tok, err := attach(dir, "bank")
	if err != nil {
		return nil, err
	}
	env.conns = append(env.conns, admin)
	env.profilers = append(env.profilers, profiler{roleBank, info.AdminAddr, tok})
	env.bankAdmin = pb.NewBankAdminClient(admin)
	env.banks = []endpoint{ep}
	env.addDaemon(roleBank, info, rep)
	if info.Signer != "" {
		rep.CPU.addNote("the bank signs denominations in its signer process (" + info.Signer + "), whose CPU is not counted")
	}
	rep.Store.Kind = "other (PostgreSQL?)"
	if st, err := os.Stat(filepath.Join(dir, "ledger")); err == nil && st.IsDir() {
		env.ledger = filepath.Join(dir, "ledger")
		rep.Store.Kind = "pebble"
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

// attachMerchant points env at the merchantd serving from dir, and checks
// that it deposits at the bank env is attached to: the account it names
// must be a merchant account of that bank, under the key it signs with.
func attachMerchant(ctx context.Context, env *environment, dir, bankDir string, rep *report) error {
	info, ep, admin, tok, err := attach(dir, "merchant")
	if err != nil {
		return err
	}
	env.conns = append(env.conns, admin)
	env.profilers = append(env.profilers, profiler{roleMerchant, info.AdminAddr, tok})
	env.merchants = []endpoint{ep}
	env.mAdmins = []pb.MerchantAdminClient{pb.NewMerchantAdminClient(admin)}
	env.addDaemon(roleMerchant, info, rep)

	conn, err := transport.Dial(ep.addr, ep.tls)
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	m, err := pb.NewMerchantClient(conn).ListProducts(cctx, &pb.ListProductsRequest{})
	if err != nil {
		return fmt.Errorf("asking the merchant at %s for its account: %w", ep.addr, err)
	}
	a, err := env.bankAdmin.GetAccount(cctx, &pb.GetAccountRequest{Account: m.MerchantAccount})
	if err != nil || !a.Merchant || !bytes.Equal(a.PublicKey, m.MerchantKey) || len(m.MerchantKey) != ed25519.PublicKeySize {
		return fmt.Errorf("the merchant serving from %s does not deposit at the bank serving from %s (its account %d is not a merchant account there under its key)", dir, bankDir, m.MerchantAccount)
	}
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
		return ecash.Denomination{}, fmt.Errorf("the bank issues no %s denomination free of fees now (loadgen needs one: make a bank for the test with, e.g., bankd serve --denominations %s:0.01/%s)", cipher, ks.Currency, cipher)
	}
	return slices.MinFunc(ok, func(a, b ecash.Denomination) int { return cmp.Compare(a.Value.Value, b.Value.Value) }), nil
}

// waitDaemonsIdle waits, at most limit, until the daemons have used under
// settleCores of CPU for idle, so that the limit measured after the phase
// does not share the cores with a bank still compacting. A daemon that
// stays busy or cannot be read is waited for no longer.
func waitDaemonsIdle(ctx context.Context, ds []daemon, idle, limit time.Duration) {
	if len(ds) == 0 {
		return
	}
	_ = waitIdle(ctx, func() (time.Duration, error) {
		ts := daemonTimes(ds)
		if ts == nil {
			return 0, errors.New("a daemon's CPU is unreadable")
		}
		var sum time.Duration
		for _, t := range ts {
			sum += t
		}
		return sum, nil
	}, idle, 250*time.Millisecond, limit)
}
