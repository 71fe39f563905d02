// Command loadgen measures blindbank end to end and against the limit its
// cryptography sets on the same machine.
//
//	loadgen run --scenario withdraw|pay|swap|check --cipher rsa|cs [--coins-per-op N] [--concurrency N] [--duration 10s] [--json]
//	loadgen limits --cipher rsa|cs [--coins-per-op N] [--json]
//
// "run" starts a bank (and, for pay and check, a merchant) inside this process, the way
// bankd and merchantd start them: real gRPC with TLS on loopback, Pebble
// stores on disk (or the bank over PostgreSQL, --store postgres, with
// --replicas banks over one database), every write synced before it is
// acknowledged. Concurrent
// simulated wallets then drive one scenario for a fixed time, and loadgen
// reports operations and coins per second, latency percentiles, CPU per coin
// (split between bank, merchant and wallets by a CPU profile) and the bank's
// bytes on disk per coin. "limits" measures what the cryptography alone
// costs per coin, all parties' share, on all cores and with no I/O; "run"
// measures the same limit before and after its timed phase and reports its
// rate as a fraction of the mean of the two. With --bank-data it runs
// against a bankd process instead (external.go), reading that process's
// CPU from /proc.
//
// Run "loadgen --help" for details; docs/PERFORMANCE.md holds results.
package main

import (
	"context"
	"flag"
	"math"
	"os"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/procs"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func main() {
	cli.QuietStdlibLog()
	procs.Raise() // as bankd and merchantd do
	os.Exit(cli.Main(command()))
}

// Bounds on what one invocation may ask for, so that every run ends by
// itself in bounded time and memory.
const (
	maxDuration    = 10 * time.Minute
	minDuration    = 100 * time.Millisecond
	maxConcurrency = 256
	maxRate        = 1_000_000
	maxCoinsPerOp  = ecash.MaxCoinsPerRequest
	minLimitTime   = 10 * time.Millisecond
	maxLimitTime   = time.Minute
	defaultMaxPre  = 1_000_000 // coins pre-withdrawn for pay, at most
)

func command() *cli.Command {
	return &cli.Command{
		Name:  "loadgen",
		Short: "measure blindbank's throughput end to end and against its crypto limit",
		Long: `loadgen measures a blindbank bank the way it runs in production and compares
the result with what the cryptography alone allows on the same machine.

"loadgen run" starts a bank (and for the pay and check scenarios a merchant)
inside this process, wired exactly as bankd and merchantd wire them: gRPC with TLS on
127.0.0.1, Pebble stores on disk in a temporary directory (or the bank over
PostgreSQL, one replica or several), every write synced before it is
acknowledged. Concurrent simulated wallets then run one scenario
for a fixed time and loadgen reports its rate, latency, CPU and disk per coin,
and the rate as a fraction of the crypto limit.

"loadgen limits" measures that limit on its own: the cost of every
cryptographic step a scenario needs per coin, all parties' share, run on all
cores with no network and no disk.

Everything listens on loopback only; every run is bounded in time and count
and stops by itself. Results for the reference machine are in
docs/PERFORMANCE.md.`,
		Example: `loadgen run --scenario withdraw --cipher cs --coins-per-op 64 --concurrency 16
loadgen run --scenario pay --cipher rsa --coins-per-op 8 --duration 10s --json
loadgen run --scenario swap --cipher cs --concurrency 16
loadgen run --scenario check --epo goods --concurrency 16
loadgen run --scenario pay --coins-per-op 8 --concurrency 16 --store postgres --replicas 3
loadgen run --scenario pay --coins-per-op 8 --concurrency 16 --prefill-spent 1000000
loadgen limits --cipher cs --coins-per-op 8`,
		Sub: []*cli.Command{runCommand(), limitsCommand(), targetsCommand(), fsyncCommand()},
	}
}

// commonFlags are the flags run and limits share.
type commonFlags struct {
	cipher     string
	coinsPerOp int
	epo        string
	limitTime  time.Duration
	keys       string
}

func (c *commonFlags) register(fs *flag.FlagSet, limitFlag string) {
	fs.StringVar(&c.cipher, "cipher", "cs", "blind-signature `CIPHER` of the coins: rsa (RSA-2048, RFC 9474) or cs (Clause Blind Schnorr)")
	fs.IntVar(&c.coinsPerOp, "coins-per-op", 0, "coins per operation: planchets per withdraw request, coins per payment, coins in (and out) per swap (1 to 1024; default 4 for swap, 1 otherwise; check has none)")
	fs.StringVar(&c.epo, "epo", "check", "check scenario: `KIND` of payment order, check (a written check) or goods (a purchase of a small product)")
	fs.DurationVar(&c.limitTime, limitFlag, 2*time.Second, "how long to measure the crypto limit of a scenario")
	fs.StringVar(&c.keys, "keys", "", "bank key `FILE` to reuse (it must hold a denomination of --cipher); if FILE does not exist, the generated keys are saved there for the next run")
}

func (c *commonFlags) check(limitFlag string) (ecash.Cipher, echeck.Kind, error) {
	cipher, err := bank.ParseCipher(c.cipher)
	if err != nil {
		return 0, 0, cli.Usagef("bad --cipher %q: want rsa or cs", c.cipher)
	}
	if c.coinsPerOp < 0 || c.coinsPerOp > maxCoinsPerOp {
		return 0, 0, cli.Usagef("bad --coins-per-op %d: want 1 to %d", c.coinsPerOp, maxCoinsPerOp)
	}
	epo, ok := parseEPOKind(c.epo)
	if !ok {
		return 0, 0, cli.Usagef("bad --epo %q: want check or goods", c.epo)
	}
	if err := checkLimitTime(limitFlag, c.limitTime); err != nil {
		return 0, 0, err
	}
	return cipher, epo, nil
}

// checkLimitTime bounds how long a crypto limit is measured.
func checkLimitTime(flag string, d time.Duration) error {
	if d < minLimitTime || d > maxLimitTime {
		return cli.Usagef("bad --%s %s: want %s to %s", flag, d, minLimitTime, maxLimitTime)
	}
	return nil
}

func runCommand() *cli.Command {
	var (
		c           commonFlags
		scenario    string
		concurrency int
		duration    time.Duration
		rate        float64
		coins       int
		maxPre      int
		dir         string
		cpuProfile  string
		traceFile   string
		memProfile  string
		store       string
		replicas    int
		pool        int
		prefillN    int64
		bankData    string
		merchData   string
		testBank    bool
		payRequest  string
	)
	return &cli.Command{
		Name:  "run",
		Short: "run a scenario against an in-process (or running) bank and merchant and report rates",
		Long: `run measures one scenario end to end.

Setup (not timed): loadgen creates a temporary directory (or --dir), generates
the bank's keys (one denomination, EUR:0.01, of --cipher; the time it takes is
reported; --keys FILE reuses keys), starts the bank as bankd does (gRPC with
TLS on 127.0.0.1, a Pebble store on disk, group commit with fsync), and for
pay and check a merchant as merchantd does, with its own Pebble store (for
check with a catalogue of one 1 KiB product at EUR:0.01). It opens and
funds one bank account per simulated wallet (--concurrency); each wallet has
its own account key and its own TLS connections. It then measures the
scenario's crypto limit (see "loadgen limits") with the bank's own keys,
and again after the timed phase once the servers have stopped: the
machine's speed drifts, and the fraction of the limit is taken against the
mean of the two (the text report warns when they differ by more than 10%).
Like bankd and merchantd, loadgen sets GOMAXPROCS to the cores plus one,
so that threads waiting in fsync do not idle a core (a GOMAXPROCS
environment variable overrides it); the limit is measured on the cores alone.

Scenarios (one operation each):
  withdraw  a wallet withdraws --coins-per-op coins in one request: derives the
            coin keys, runs the first round (PrepareWithdraw) for CS, blinds,
            signs the request with its account key, and unblinds and verifies
            the bank's signatures. Timed from the first step to the last.
  pay       a wallet pays an order of --coins-per-op coins at the merchant:
            fetches and verifies the signed payment request, signs a deposit
            permission per coin, seals the coins to the bank (HPKE) and hands
            them to the merchant, which deposits them at the bank, verifies the
            receipt and records the order paid; the wallet verifies the
            receipt. Only that is timed: the coins were withdrawn and the orders
            created before the timed phase, and a warm-up of 10 untimed
            payments per wallet ran. With --pay-request uri the wallet
            takes the signed request from the order's payment URI instead of
            fetching it (as from a QR code): one RPC fewer per payment.
            Unless --coins is given, loadgen withdraws
            enough coins to pay at the crypto limit for all of --duration
            (+10%), which the phase cannot outrun (RSA coins cost the bank
            milliseconds each to issue: this takes a while); if the coins run
            out anyway the phase ends early and the report says so.
  swap      a wallet swaps --coins-per-op coins (default 4) for as many new
            coins of the same denomination, in one request: derives and
            blinds the outputs (CS: after PrepareWithdraw), signs a swap
            permission with each input's coin key, sends the request (the
            bank verifies every input coin and permission, blind-signs the
            outputs and marks the inputs spent in one commit), unblinds and
            verifies. Only that is timed: the coins of one swap per wallet are
            withdrawn before the timed phase, and each swap's outputs are the
            next one's inputs. A warm-up of 10 untimed swaps per wallet runs
            first.
  check     a wallet pays from its bank account with a NetBill payment order
            (EPO) through the merchant's till, one per operation, no coins
            (--coins-per-op does not apply; "coins" in the report count
            checks). --epo check (default): a one-cent check, as
            "wallet write-check" writes it: the wallet seals the private part
            to the bank (HPKE) and signs; the till verifies, endorses and
            forwards it; the bank verifies both signatures, opens the private
            part, decides, signs the receipt and seals the customer's block;
            the till and the wallet verify the receipt, the wallet opens its
            block. --epo goods: a purchase of the till's 1 KiB product, as
            "wallet buy" makes it: quote, goods encrypted under a key K the
            till commits to, then the EPO as above with K sealed to the bank
            and released in the receipt; the wallet checks K and decrypts.
            The till's account and key are fetched once per wallet before
            the timed phase; a warm-up of 10 untimed orders per wallet runs
            first.

The wallets are lean protocol clients holding their coins in memory (no
wallet store, no fsync on the wallet side): what is measured is the bank and
the merchant, plus the client cryptography every real wallet must do.

The bank's store (--store):
  pebble    (default) a Pebble store in the run's directory, one bank.
  postgres  a throwaway PostgreSQL server: initdb into a temporary
            directory, listening on a unix socket only, with fsync=on and
            synchronous_commit=on (every commit flushed before it is
            acknowledged), removed at exit; it needs the server binaries
            (initdb, pg_ctl, postgres: on PATH, under
            /usr/lib/postgresql/*/bin, or in $BLINDBANK_PG_BIN).
  postgres://…  an existing, empty database (loadgen refuses one that
            already holds a bank's tables: it opens accounts and moves
            money). loadgen refuses a server with fsync or
            synchronous_commit off.
With --replicas N (PostgreSQL only), N banks run over the one database, as
N "bankd serve --store postgres://…" replicas would: each with its own gRPC
server on loopback, a copy of the keys and its own connection pool. Wallet i
uses replica i mod N, and for pay and check there is one merchant per
replica (merchant i deposits at replica i) and wallet i pays at merchant i
mod N. Over PostgreSQL the report adds the server's CPU per coin (throwaway
server only, from /proc), its transactions, WAL flushes and WAL bytes over
the phase, and what the banks' backends were doing: pg_stat_activity
sampled every 50 ms, as the average number of backends running
("active/CPU"), waiting for a lock ("active/Lock:…"), for a WAL flush
("active/IO:WALSync"), or for the bank's next statement ("idle in
transaction").

--prefill-spent N writes, before the timed phase (not timed), the history
of N coins withdrawn and spent into the bank's store, through the store's
own interface as the bank writes it: a customer account credited, then
withdrawals of 64 coins (blind signatures, issued index, CS nonce locks)
and deposits of 8 coins to a merchant (spent-coin records with their deposit
permissions, deposit records with signed receipts, postings, audit-log
entries). Coin ids are hashes of random keys, as real ones are; the blind
signatures and the coins' signatures inside the records are random bytes of
the right length (real ones would cost an hour of CPU per 10M coins; the
store never reads them). loadgen then waits until the store is idle (Pebble:
its compactions done; PostgreSQL: VACUUM ANALYZE and CHECKPOINT) and
reports the store's size; it waits so again after the setup's withdrawals,
just before the timed phase, so that the phase pays only for its own work.
On the reference machine (2 cores) a Pebble store takes some 14,000 coins
a second while small, fewer as it grows: 1M coins in about 1.5 minutes,
10M in 25 (6,800 a second on average, 6.2 GiB).

Timed phase: --concurrency wallets run operations back to back until
--duration has passed (an operation in flight finishes); with --rate R, on
a fixed schedule of R operations a second in all instead (each wallet every
concurrency/R seconds, the wallets staggered), which measures the latency
of a system at that load rather than at saturation: "a single one-coin pay
on an idle system" is --concurrency 1 --rate 100, say. Reported:
  ops/s, coins/s   completed operations and coins over the phase's wall time
  latency          p50, p95, p99 and max of one operation (with --rate, from
                   its scheduled start: an operation that waits for the
                   previous one to finish counts the wait)
  limit, fraction  the crypto limit in coins/s, before and after the phase,
                   and coins/s as a fraction of their mean: the number to
                   steer by
  CPU per coin     process CPU (getrusage, user+system) over the phase divided
                   by its coins; the wallets run in this process, so it
                   includes their work. A CPU profile of the phase splits it:
                   the bank (its gRPC server, handlers and commit pipeline),
                   the merchant (server, store, its bank client) and the
                   wallets are each labelled; Pebble's background work (WAL
                   writes and syncs, flushes, compactions) carries Pebble's own
                   label and is reported apart, for all stores together;
                   "runtime" is the rest (garbage collector, scheduler)
  commits          the bank's synced group commits over the phase (Pebble,
                   this process's banks): operations per commit, p50, p99
                   and slowest (the bounds of the blindbank_commit_seconds
                   buckets holding them), and how many took over 6.4 ms,
                   alone more than a lone payment's 5 ms goal: each is an
                   fsync, so a disk that stalls shows here
  disk per coin    growth of the bank's Pebble directory (WAL included) over
                   the phase divided by its coins, and its size at the end;
                   then, without a prefill, the store compacted, over the
                   coins it issued. Over PostgreSQL: the WAL written over
                   the phase per coin, and the database's size

Against running daemons: --bank-data DIR --test-bank runs the scenario
against the "bankd serve" serving from DIR on this machine instead of
starting a bank, so that the bank runs in its own process, under its own
CPU limits or on cores of its own (taskset), or on a store loadgen did not
make. loadgen opens accounts in that bank and credits each wallet's with
1,000,000,000 units of its currency, for good: use a bank made for the
test, and confirm it with --test-bank. loadgen reads DIR/addresses.json
(written by bankd once it listens) for the public address and the
certificate's fingerprint, and the admin address and token file, through
which it opens and funds the accounts (and, for pay and check, the
merchant's): the admin listener must be the loopback one with the token
only, and no public call may need a client certificate. The wallets use
the bank's smallest denomination of --cipher that is issued now and free
of fees (make the bank with, say, --denominations
EUR:0.01/cs,EUR:0.02/rsa). For pay and check, loadgen starts a merchant
over that bank as above, or with --merchant-data DIR runs against the
"merchantd serve" serving from DIR, which must deposit at the same bank
(and, for --epo goods, sell a product "loadgen-goods"). The report then
adds each daemon's CPU per coin, every thread of the process read from
/proc (Linux; only if the PID in addresses.json is the process listening
on the address: not for a daemon in another PID namespace; a bank's signer
process is not counted), and the bytes the bank's Pebble store in
DIR/ledger grew by (it is not compacted); the process figures are the
wallets' (and a merchant loadgen started). The crypto limit is measured
with stand-in keys of the same cipher and size (the bank's private keys
stay with it), the second time once the bank has stopped compacting (up to
30 s). bankd limits the calls of each peer address and account (by default
500 and 100 a second), and the merchant deposits from one address: start
the bank for a load test with --rate-limit-per-peer off
--rate-limit-per-account off, as loadgen's own bank runs. --store,
--replicas, --pool and --prefill-spent do not apply to a running bank.

A progress line is shown on stderr about once a second.`,
		Example: `loadgen run --scenario withdraw --cipher rsa --coins-per-op 64 --concurrency 4
loadgen run --scenario pay --cipher cs --coins-per-op 8 --concurrency 16 --cpuprofile pay.prof
loadgen run --scenario pay --concurrency 1 --rate 100 --duration 30s
loadgen run --scenario withdraw --coins-per-op 64 --concurrency 16 --store postgres --replicas 2
loadgen run --scenario pay --coins-per-op 8 --concurrency 16 --prefill-spent 1000000
loadgen run --scenario swap --concurrency 16 --bank-data ./testbank --test-bank
go tool pprof -top -tagfocus role=bank pay.prof`,
		Flags: func(fs *flag.FlagSet) {
			c.register(fs, "limit-time")
			fs.StringVar(&scenario, "scenario", "", "`SCENARIO` to run: "+scenarioNames+" (required)")
			fs.IntVar(&concurrency, "concurrency", 4, "concurrent wallets, each with its own account and connections (1 to 256)")
			fs.DurationVar(&duration, "duration", 10*time.Second, "length of the timed phase (100ms to 10m)")
			fs.Float64Var(&rate, "rate", 0, "pace the timed phase at `R` operations per second in all, spread evenly over the wallets (0: back to back); latency then counts from each operation's scheduled start")
			fs.IntVar(&coins, "coins", 0, "pay: coins to withdraw for the timed phase, in all (0: enough to pay at the crypto limit for --duration)")
			fs.IntVar(&maxPre, "max-coins", defaultMaxPre, "pay: never withdraw more than this many coins before the timed phase")
			fs.StringVar(&dir, "dir", "", "keep the bank's and merchant's data in `DIR` (must be empty or absent; default: a temporary directory, removed at exit)")
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write the CPU profile of the timed phase to `FILE` (samples carry the label role=bank|merchant|client, or Pebble's own); with --bank-data also FILE.bankd (and with --merchant-data FILE.merchantd), the daemons' own, from their admin listeners")
			fs.StringVar(&memProfile, "memprofile", "", "write this process's allocation profile at the end of the timed phase to `FILE` and at its start to FILE.base: the phase's allocations are the difference (go tool pprof -sample_index=alloc_space -base FILE.base FILE)")
			fs.StringVar(&traceFile, "trace", "", "write an execution trace of the timed phase to `FILE`, to see what operations wait for (go tool trace; go tool trace -pprof=sync FILE for blocking on locks and channels)")
			fs.StringVar(&store, "store", "pebble", "the bank's `STORE`: pebble (in --dir), postgres (a throwaway PostgreSQL server, started and removed by loadgen), or a postgres:// URL of an empty database")
			fs.IntVar(&replicas, "replicas", 1, "bank replicas over the one PostgreSQL database, wallets spread over them round robin (1 to 16; needs --store postgres)")
			fs.IntVar(&pool, "pool", 0, "PostgreSQL connections per replica (0: pgxpool's default, the greater of 4 and the CPUs, as bankd uses; 1 to 64)")
			fs.Int64Var(&prefillN, "prefill-spent", 0, "before the timed phase, write the history of `N` withdrawn and spent coins into the bank's store (0 to 100000000; see above)")
			fs.StringVar(&bankData, "bank-data", "", "run against the bankd serving from data `DIR` (its addresses.json) instead of starting a bank (see above)")
			fs.StringVar(&merchData, "merchant-data", "", "pay and check, with --bank-data: run against the merchantd serving from data `DIR` instead of starting a merchant")
			fs.StringVar(&payRequest, "pay-request", "fetch", "pay: how wallets get each payment request, `HOW`: fetch (from the merchant, GetPaymentRequest) or uri (from the order's payment URI, made with the order: one RPC fewer)")
			fs.BoolVar(&testBank, "test-bank", false, "with --bank-data, required: confirm that the bank is one made for testing (loadgen opens accounts in it and credits them, for good)")
		},
		NArgs: 0,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			cipher, epo, err := c.check("limit-time")
			if err != nil {
				return err
			}
			if scenario == "" {
				return cli.Usagef("--scenario is required: %s", scenarioNames)
			}
			s, ok := parseScenario(scenario)
			if !ok {
				return cli.Usagef("bad --scenario %q: want %s", scenario, scenarioNames)
			}
			switch {
			case payRequest != "fetch" && payRequest != "uri":
				return cli.Usagef("bad --pay-request %q: want fetch or uri", payRequest)
			case s != scenarioPay && inv.IsSet("pay-request"):
				return cli.Usagef("--pay-request applies to the pay scenario only")
			}
			if s == scenarioCheck && c.coinsPerOp > 1 {
				return cli.Usagef("--coins-per-op does not apply to check: one payment order per operation, no coins")
			}
			cfg := runConfig{
				Scenario: s, Cipher: cipher, CoinsPerOp: s.coinsPerOp(c.coinsPerOp), EPOKind: epo, PayFromURI: payRequest == "uri",
				Concurrency: concurrency, Duration: duration, Rate: rate,
				LimitTime: c.limitTime, Coins: coins, MaxCoins: maxPre, Dir: dir, KeysFile: c.keys,
				CPUProfile: cpuProfile, MemProfile: memProfile, Trace: traceFile, Progress: newProgress(inv),
			}
			if concurrency < 1 || concurrency > maxConcurrency {
				return cli.Usagef("bad --concurrency %d: want 1 to %d", concurrency, maxConcurrency)
			}
			if duration < minDuration || duration > maxDuration {
				return cli.Usagef("bad --duration %s: want %s to %s", duration, minDuration, maxDuration)
			}
			if rate < 0 || rate > maxRate || math.IsNaN(rate) {
				return cli.Usagef("bad --rate %v: want 0 (back to back) to %d operations per second", rate, maxRate)
			}
			if coins < 0 || maxPre < 1 || coins > maxPre {
				return cli.Usagef("bad --coins %d / --max-coins %d: want 0 <= coins <= max-coins, max-coins >= 1", coins, maxPre)
			}
			if cfg.Store, err = parseStore(store, replicas, pool); err != nil {
				return err
			}
			if prefillN < 0 || prefillN > maxPrefill {
				return cli.Usagef("bad --prefill-spent %d: want 0 to %d", prefillN, maxPrefill)
			}
			cfg.PrefillSpent = prefillN
			if err := checkExternal(inv, &cfg, bankData, merchData, testBank); err != nil {
				return err
			}
			rep, err := run(ctx, cfg)
			if err != nil {
				return err
			}
			return inv.Print(rep, rep.writeText)
		},
	}
}

// checkExternal checks --bank-data and --merchant-data against the rest
// of cfg and sets them.
func checkExternal(inv *cli.Invocation, cfg *runConfig, bankData, merchData string, testBank bool) error {
	switch {
	case bankData == "" && (merchData != "" || testBank):
		return cli.Usagef("--merchant-data and --test-bank go with --bank-data")
	case bankData == "":
		return nil
	case !testBank:
		return cli.Usagef("--bank-data needs --test-bank: loadgen opens accounts in the bank and credits each wallet's with 1,000,000,000 units of its currency, for good; run it only against a bank made for the test, and say so")
	case merchData != "" && cfg.Scenario != scenarioPay && cfg.Scenario != scenarioCheck:
		return cli.Usagef("--merchant-data applies to pay and check only")
	}
	for _, f := range []string{"store", "replicas", "pool", "prefill-spent"} {
		if inv.IsSet(f) {
			return cli.Usagef("--%s does not apply with --bank-data: the running bank has its own store", f)
		}
	}
	cfg.BankData, cfg.MerchantData = bankData, merchData
	return nil
}

func limitsCommand() *cli.Command {
	var (
		c        commonFlags
		scenario string
	)
	return &cli.Command{
		Name:  "limits",
		Short: "measure the crypto limit of each scenario on this machine, in coins/s",
		Long: `limits measures the cost of the cryptography each scenario must do per coin,
all parties' share, with no network and no disk, on all cores (one worker per
core), and reports the coins per second that alone allows: an upper
bound no implementation on this machine can beat without cheaper crypto.

Per operation of --coins-per-op coins (default: 4 for swap, 1 otherwise):
  withdraw  wallet: derive each coin key (HKDF, Ed25519), CS first-round
            nonce, blind, sign the request with the account key;
            bank: CS first round (derive R0, R1), verify the request
            signature, blind-sign each planchet;
            wallet: unblind and verify each signature.
  pay       wallet: verify the merchant's payment request, sign a deposit
            permission per coin (Ed25519), seal the payment to the bank
            (HPKE: X25519, HKDF-SHA256, ChaCha20-Poly1305);
            bank: verify the merchant's signature, open the payment, verify
            every coin's blind signature and deposit permission in one
            batch (as the bank does: ecash.VerifyPermissions), sign the
            receipt;
            merchant and wallet: verify the receipt.
  swap      wallet: derive each output's coin key, CS first-round nonce,
            blind, sign a swap permission per input (Ed25519);
            bank: CS first round, verify the inputs' blind signatures and
            permissions in one batch, blind-sign each output;
            wallet: unblind and verify each output's signature.
  check     one payment order (--epo check or goods), per check:
            goods only: the merchant signs a quote, the wallet and the
            merchant verify it; the merchant encrypts the 1 KiB goods
            (ChaCha20-Poly1305), hashes them and commits to the key K; the
            wallet checks the goods hash;
            wallet: a fresh X25519 reply key, the private part sealed to the
            bank (HPKE), the customer's signature;
            merchant: verify the customer's signature and keys (goods: check
            K against the commitment, seal K to the bank), sign the
            endorsement;
            bank: verify the customer's and the merchant's signatures, open
            the private part (goods: and K, checked against the commitment),
            sign the receipt, seal the customer's block;
            merchant and wallet: verify the receipt; the wallet opens its
            block (goods: checks K, decrypts).
Encodings and hashes on the way are included; the merchant's signature on
the payment request is not (it is made when the order is created, outside the
timed phase of "loadgen run pay"). Each signature the protocol needs is made
and verified once; where the implementation repeats one (the till verifies a
customer's EPO signature twice; the bank signs a receipt for each possible
outcome of a check before its commit picks one) the limit does not count the
repetition, so the fraction shows it. The audit-log entry every change
appends (hashes in the bank's commit) is not in the limit either.

Besides coins/s on all cores, the CPU time of each party per coin (one core)
is reported. Keys are generated for the measurement (one EUR:0.01
denomination of --cipher; RSA-2048), or loaded from --keys FILE.`,
		Example: `loadgen limits --cipher rsa
loadgen limits --cipher cs --coins-per-op 64 --scenario withdraw --json`,
		Flags: func(fs *flag.FlagSet) {
			c.register(fs, "duration")
			fs.StringVar(&scenario, "scenario", "", "measure only `SCENARIO` ("+scenarioNames+"); default all")
		},
		NArgs: 0,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			cipher, epo, err := c.check("duration")
			if err != nil {
				return err
			}
			which := scenarios
			if scenario != "" {
				s, ok := parseScenario(scenario)
				if !ok {
					return cli.Usagef("bad --scenario %q: want %s", scenario, scenarioNames)
				}
				which = []scenarioKind{s}
			}
			rep, err := limits(ctx, cipher, c.coinsPerOp, epo, c.limitTime, c.keys, which, newProgress(inv))
			if err != nil {
				return err
			}
			return inv.Print(rep, rep.writeText)
		},
	}
}
