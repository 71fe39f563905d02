package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// runConfig is what "loadgen run" was asked to do.
type runConfig struct {
	Scenario   scenarioKind
	Cipher     ecash.Cipher
	CoinsPerOp int // 1 for check
	// PayFromURI has the pay scenario's wallets take each payment request
	// from its order's payment URI instead of fetching it.
	PayFromURI  bool
	EPOKind     echeck.Kind // check: the kind of payment order
	Concurrency int
	Duration    time.Duration
	// Rate paces the timed phase at this many operations per second in all
	// (each wallet at Rate/Concurrency); 0 runs operations back to back.
	Rate      float64
	LimitTime time.Duration
	Coins     int // pay: coins to pre-withdraw in all; 0 sizes them from a warm-up
	MaxCoins  int // pay: cap on the pre-withdrawal
	Dir       string
	KeysFile  string
	// BankData and MerchantData are the data directories of a running
	// bankd and merchantd to measure instead of starting them ("" to
	// start them in this process).
	BankData, MerchantData string
	CPUProfile             string
	// MemProfile is the file of the allocations up to the end of the
	// timed phase; MemProfile+".base" holds those up to its start.
	MemProfile string
	Trace      string // execution trace of the timed phase; "" for none
	Store      storeConfig
	// PrefillSpent is the spent coins written into the store before the
	// timed phase (prefill.go).
	PrefillSpent int64
	Progress     *progress
}

// opTimeout bounds one operation or setup call, so that a stuck server
// cannot stop a run from ending.
const opTimeout = time.Minute

// The preparation of pay, swap and check.
const (
	warmupOps    = 10  // untimed operations per wallet before the timed phase
	payMargin    = 1.1 // coins for this much more than the crypto limit needs
	orderTTL     = 2 * time.Hour
	orderSummary = "loadgen order"
)

// environment is a bank (or several replicas over PostgreSQL), perhaps a
// merchant per bank, and the simulated wallets: started in this process,
// or (--bank-data, --merchant-data) running already.
type environment struct {
	dir   string
	keys  *bank.Keys    // the crypto limit's keys: the bank's own when loadgen starts it
	denom bank.DenomKey // the limit's denomination
	coins ecash.Denomination
	store storeConfig
	pg    *pgDatabase // nil over Pebble

	banks     []endpoint // the replicas; one over Pebble
	bankAdmin pb.BankAdminClient
	merchants []endpoint // pay and check: merchant i deposits at bank i
	mAdmins   []pb.MerchantAdminClient
	// The nodes this process runs, stopped by close.
	bankNodes     []*node.Bank
	merchantNodes []*node.Merchant
	// daemons are the processes it runs against instead, and profilers
	// their admin listeners.
	daemons   []daemon
	profilers []profiler
	// ledger is the bank's Pebble directory; "" if there is none to
	// measure (PostgreSQL, or a running bank's store kept elsewhere).
	ledger  string
	conns   []*grpc.ClientConn
	wallets []*simWallet
	closed  bool
}

// rpcsServed is the calls the banks and merchants have served so far,
// counted by their RPC metrics; false unless this process runs them all.
func (e *environment) rpcsServed() (float64, bool) {
	if len(e.daemons) > 0 || len(e.bankNodes) == 0 {
		return 0, false
	}
	var regs []*prometheus.Registry
	for _, b := range e.bankNodes {
		regs = append(regs, b.Registry)
	}
	for _, m := range e.merchantNodes {
		regs = append(regs, m.Registry)
	}
	total := 0.0
	for _, r := range regs {
		fams, err := r.Gather()
		if err != nil {
			return 0, false
		}
		for _, f := range fams {
			if f.GetName() == transport.RPCCallsMetric {
				for _, m := range f.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total, true
}

// bankFor is the replica wallet id uses: wallets are spread over the
// replicas round robin, as a load balancer would spread them.
func (e *environment) bankFor(id int) endpoint { return e.banks[id%len(e.banks)] }

// merchantFor is the merchant wallet id pays at, and its admin client:
// one per replica, round robin like the banks; false if the scenario has
// none.
func (e *environment) merchantFor(id int) (endpoint, pb.MerchantAdminClient, bool) {
	if len(e.merchants) == 0 {
		return endpoint{}, nil, false
	}
	return e.merchants[id%len(e.merchants)], e.mAdmins[id%len(e.mAdmins)], true
}

// close stops everything this process started but the database, and
// closes its connections; closing twice is harmless.
func (e *environment) close() {
	if e.closed {
		return
	}
	e.closed = true
	for _, w := range e.wallets {
		w.close()
	}
	for _, c := range e.conns {
		c.Close()
	}
	for _, m := range e.merchantNodes {
		m.Close()
	}
	for _, b := range e.bankNodes {
		b.Close()
	}
}

// labeled runs f with the profiler label role, which every goroutine f
// starts inherits.
func labeled(ctx context.Context, role string, f func(ctx context.Context)) {
	pprof.Do(ctx, pprof.Labels(roleLabel, role), f)
}

// run runs one scenario end to end and reports on it.
func run(ctx context.Context, cfg runConfig) (rep *report, err error) {
	prog := cfg.Progress
	setupStart := time.Now()
	rep = &report{
		Scenario: cfg.Scenario.String(), Cipher: cfg.Cipher.String(), CoinsPerOp: cfg.CoinsPerOp, Unit: cfg.Scenario.unit(),
		Concurrency: cfg.Concurrency, Duration: cfg.Duration.Seconds(), Rate: cfg.Rate, Machine: machine(),
	}
	if cfg.Scenario == scenarioCheck {
		rep.EPOKind = cfg.EPOKind.String()
	}
	if cfg.Scenario == scenarioPay {
		rep.PayRequest = "fetch"
		if cfg.PayFromURI {
			rep.PayRequest = "uri"
		}
	}
	dir, cleanup, err := workDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	env := &environment{dir: dir, store: cfg.Store}
	rep.Store = storeReport{Kind: "pebble", Replicas: cfg.Store.Replicas}
	if cfg.Store.Postgres {
		rep.Store.Kind = "postgres"
		prog.Status("starting or connecting to PostgreSQL ...")
		env.pg, err = openPostgres(ctx, cfg.Store.DSN, cfg.Store.Pool)
		prog.Clear()
		if err != nil {
			return nil, err
		}
		defer env.pg.close() // after the banks, deferred below
		rep.Store.Postgres = &pgReport{}
		if err := env.pg.settings(ctx, rep.Store.Postgres); err != nil {
			return nil, err
		}
		prog.Note("store: %s", rep.Store.describe())
	}
	defer env.close()

	if err := setUp(ctx, env, cfg, rep); err != nil {
		return nil, err
	}
	if cfg.PrefillSpent > 0 {
		p, err := prefill(ctx, env, cfg.PrefillSpent, prog)
		if err != nil {
			return nil, err
		}
		rep.Prefill = &p
	}

	// The crypto limit, with the bank's keys (stand-ins for a running bank),
	// while the servers idle.
	prog.Status("measuring the crypto limit of %s (%s) ...", cfg.Scenario, cfg.LimitTime)
	kit, err := newCryptoKit(env.keys, env.denom)
	if err != nil {
		return nil, err
	}
	rep.Limit, err = measureLimit(ctx, kit, cfg.Scenario, cfg.CoinsPerOp, cfg.EPOKind, cfg.LimitTime)
	prog.Clear()
	if err != nil {
		return nil, err
	}
	prog.Note("crypto limit of %s: %.0f %ss/s on %d cores", cfg.Scenario, rep.Limit.CoinsPerSec, rep.Unit, rep.Limit.Workers)

	prog.Status("opening and funding %d wallet accounts ...", cfg.Concurrency)
	env.wallets = make([]*simWallet, cfg.Concurrency)
	err = eachWallet(ctx, cfg.Concurrency, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		w, err := newSimWallet(ctx, i, env)
		env.wallets[i] = w
		return err
	})
	prog.Clear()
	if err != nil {
		return nil, err
	}

	n := cfg.CoinsPerOp
	var op func(ctx context.Context, w *simWallet) error
	switch cfg.Scenario {
	case scenarioWithdraw:
		op = func(ctx context.Context, w *simWallet) error {
			_, err := w.withdraw(ctx, n)
			return err
		}
	case scenarioPay:
		op = func(ctx context.Context, w *simWallet) error { return w.payNext(ctx, n) }
		if err := preparePay(ctx, env, cfg, rep, op); err != nil {
			return nil, err
		}
	case scenarioSwap:
		op = func(ctx context.Context, w *simWallet) error { return w.swapNext(ctx, n) }
		if err := prepareSwap(ctx, env, cfg, rep, op); err != nil {
			return nil, err
		}
	case scenarioCheck:
		op = func(ctx context.Context, w *simWallet) error { return w.checkNext(ctx, cfg.EPOKind) }
		if err := prepareCheck(ctx, env, cfg, rep, op); err != nil {
			return nil, err
		}
	}
	if cfg.PrefillSpent > 0 {
		// The setup's withdrawals (for pay, some 50 s of them) leave the
		// store compactions to do, and in a store of 10M coins more of
		// them than in one of 1M. Left to run in the timed phase, they
		// would be charged to the fewer coins a slower phase moves, and
		// the cost per coin at two sizes (issue 7's measure) would compare
		// the setups as much as the payments.
		t0 := time.Now()
		prog.Status("waiting for the store to settle after the setup ...")
		err := settle(ctx, env)
		prog.Clear()
		if err != nil {
			return nil, err
		}
		rep.Setup.SettleSeconds = time.Since(t0).Seconds()
	}
	rep.Setup.Seconds = time.Since(setupStart).Seconds()

	// The timed phase.
	runtime.GC() // start without the setup's garbage
	if err := writeAllocs(cfg.MemProfile, ".base"); err != nil {
		return nil, err
	}
	before, err := dirSize(env.ledger)
	if err != nil {
		return nil, err
	}
	cpu0, err := processCPU()
	if err != nil {
		return nil, err
	}
	daemons0 := daemonTimes(env.daemons)
	rpcs0, rpcsOK := env.rpcsServed()
	commits0, commitsOK := env.commitsSoFar()
	sys0, sysOK := systemBusy()
	var pgph *pgPhase
	if env.pg != nil {
		if pgph, err = env.pg.startPhase(ctx); err != nil {
			return nil, err
		}
	}
	var prof bytes.Buffer
	profErr := pprof.StartCPUProfile(&prof)
	stopTrace, err := startTrace(cfg.Trace)
	if err != nil {
		if profErr == nil {
			pprof.StopCPUProfile()
		}
		return nil, err
	}
	var daemonProfiles func() ([]string, string)
	if cfg.CPUProfile != "" && len(env.profilers) > 0 {
		daemonProfiles = profileDaemons(ctx, env.profilers, cfg.Duration, cfg.CPUProfile)
	}
	label := fmt.Sprintf("%s %s ×%d, %d wallets", cfg.Scenario, cfg.Cipher, n, cfg.Concurrency)
	res, err := runPhase(ctx, env.wallets, cfg.Duration, cfg.Rate, n, op, func(s phaseStatus) {
		prog.Status("%s: %4.1fs/%s  %d ops  %d coins  %.0f coins/s", label, s.elapsed.Seconds(), cfg.Duration, s.ops, s.coins, s.rate)
	})
	if profErr == nil {
		pprof.StopCPUProfile()
	}
	if err := stopTrace(); err != nil {
		return nil, err
	}
	cpu1, cerr := processCPU()
	daemons1 := daemonTimes(env.daemons)
	rpcs1, rpcsOK1 := env.rpcsServed()
	commits1, commitsOK1 := env.commitsSoFar()
	sys1, sysOK1 := systemBusy()
	prog.Clear()
	if err := writeAllocs(cfg.MemProfile, ""); err != nil {
		return nil, err
	}
	var profiles []string
	var profileNote string
	if daemonProfiles != nil {
		// They cover --duration, even if the phase ended early.
		prog.Status("waiting for the daemons' CPU profiles ...")
		profiles, profileNote = daemonProfiles()
		prog.Clear()
	}
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	after, err := dirSize(env.ledger)
	if err != nil {
		return nil, err
	}
	if res.ops == 0 {
		return nil, errors.New("no operation completed in the timed phase")
	}
	if pgph != nil {
		if err := pgph.finish(ctx, rep.Store.Postgres, res.elapsed.Seconds(), res.ops, res.coins); err != nil {
			return nil, err
		}
	}

	rep.Elapsed = res.elapsed.Seconds()
	rep.Ops, rep.Coins = res.ops, res.coins
	if res.exhausted {
		rep.EndedEarly = fmt.Sprintf("a wallet ran out of pre-withdrawn coins after %.1fs", rep.Elapsed)
	}
	rep.OpsPerSec = float64(res.ops) / rep.Elapsed
	rep.CoinsPerSec = float64(res.coins) / rep.Elapsed
	rep.Latency = latencies(res.latencies)
	if rpcsOK && rpcsOK1 {
		rep.RPCsPerOp = (rpcs1 - rpcs0) / float64(res.ops)
	}
	if commitsOK && commitsOK1 {
		rep.Commits = commits1.since(commits0)
	}
	rep.Disk = diskReport{StoreBytes: after, GrowthBytes: after - before, BytesPerCoin: float64(after-before) / float64(res.coins)}
	cpu := cpu1 - cpu0
	rep.CPU = cpuReport{
		ProcessUs:  perCoinUs(cpu, res.coins),
		CoresBusy:  cpu.Seconds() / rep.Elapsed,
		OtherCores: -1,
		Note:       rep.CPU.Note, // the setup's
		Profiles:   profiles,
	}
	if profileNote != "" {
		rep.CPU.addNote(profileNote)
	}
	daemonsCPU, daemonsOK := rep.CPU.setDaemons(env.daemons, daemons0, daemons1, rep.Elapsed, res.coins)
	if sysOK && sysOK1 && daemonsOK {
		// Not this process, the daemons it runs against, or the throwaway
		// PostgreSQL server.
		rep.CPU.OtherCores = max(0, (sys1-sys0-cpu-daemonsCPU-rep.Store.Postgres.serverCPU(rep.Elapsed)).Seconds()/rep.Elapsed)
	}
	if profErr != nil {
		rep.CPU.addNote("no CPU profile (" + profErr.Error() + "): no split by role")
	} else {
		if cfg.CPUProfile != "" {
			if err := os.WriteFile(cfg.CPUProfile, prof.Bytes(), 0o644); err != nil {
				return nil, err
			}
		}
		split, err := cpuByLabel(prof.Bytes(), roleLabel)
		if err != nil {
			return nil, err
		}
		rep.CPU.setSplit(split, cpu, res.coins)
		if rep.External != nil && rep.CPU.BankUs != nil {
			// No bank in this process, and perhaps no merchant.
			rep.CPU.BankUs = nil
			if cfg.MerchantData != "" {
				rep.CPU.MerchantUs = nil
			}
		}
	}

	// The store at rest: stop the servers, then flush and compact it.
	env.close()
	// A bank running on may still be compacting: let it finish (up to
	// a while) rather than share the cores with the limit.
	waitDaemonsIdle(ctx, env.daemons, time.Second, 30*time.Second)

	// The limit again, now that nothing else runs in the process.
	prog.Status("measuring the crypto limit of %s again (%s) ...", cfg.Scenario, cfg.LimitTime)
	rep.LimitAfter, err = measureLimit(ctx, kit, cfg.Scenario, cfg.CoinsPerOp, cfg.EPOKind, cfg.LimitTime)
	prog.Clear()
	if err != nil {
		return nil, err
	}
	rep.Fraction = rep.CoinsPerSec / rep.meanLimit()
	issued := res.coins
	switch cfg.Scenario {
	case scenarioPay:
		issued = rep.Setup.PrewithdrawnCoins
		rep.Disk.PaidCoins = res.coins + rep.Setup.WarmupCoins
	case scenarioSwap:
		// Every swap issues as many coins as it spends.
		rep.Disk.SwappedCoins = res.coins + rep.Setup.WarmupCoins
		issued = rep.Setup.PrewithdrawnCoins + rep.Disk.SwappedCoins
	case scenarioCheck:
		issued = 0
		rep.Disk.Checks = res.coins + rep.Setup.WarmupCoins
	}
	rep.Disk.IssuedCoins = issued
	var rest int64
	switch {
	case env.pg != nil:
		// The database as it stands (no VACUUM FULL); the WAL written
		// over the phase, not the database's growth, is "written".
		pr := rep.Store.Postgres
		rest = pr.DatabaseBytes
		rep.Disk.StoreBytes = pr.DatabaseBytes
		rep.Disk.GrowthBytes = int64(pr.WALBytesPerOp * float64(res.ops))
		rep.Disk.BytesPerCoin = float64(rep.Disk.GrowthBytes) / float64(res.coins)
	case cfg.PrefillSpent > 0:
		// Compacting gigabytes of prefill would take minutes and say
		// nothing per coin: the prefill reports the store's size.
		rep.Disk.Note = "not compacted after a prefill: see the prefill's store size"
		return rep, nil
	case len(env.bankNodes) == 0:
		// Another process's store: its directory's growth is all there is.
		rep.Disk.Note = "the bank runs on: its store is not compacted"
		if env.ledger == "" {
			rep.Disk.Note = "the bank's store is not a Pebble store in its data directory: no bytes on disk measured"
		}
		return rep, nil
	default:
		prog.Status("compacting the bank's store ...")
		rest, err = compactedSize(env.ledger)
		prog.Clear()
		if err != nil {
			return nil, err
		}
	}
	rep.Disk.AtRestBytes = rest
	if issued > 0 {
		rep.Disk.AtRestBytesPerCoin = float64(rest) / float64(issued)
	}
	if rep.Disk.Checks > 0 {
		rep.Disk.AtRestBytesPerCheck = float64(rest) / float64(rep.Disk.Checks)
	}
	return rep, nil
}

// workDir returns dir (which must be empty or absent), or a new temporary
// directory that cleanup removes.
func workDir(dir string) (string, func(), error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "loadgen-")
		if err != nil {
			return "", nil, err
		}
		return tmp, func() { os.RemoveAll(tmp) }, nil
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", nil, fmt.Errorf("--dir %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	return dir, func() {}, nil
}

// setUp readies the bank and, for pay and check, the merchant: started in
// this process, or attached to the running daemons cfg names. It also
// loads or generates the crypto limit's keys.
func setUp(ctx context.Context, env *environment, cfg runConfig, rep *report) error {
	prog := cfg.Progress
	rsaBits := 2048
	what := "the bank's keys"
	if cfg.BankData != "" {
		ks, err := attachBank(ctx, env, cfg.BankData, rep)
		if err != nil {
			return err
		}
		what = "stand-in keys for the crypto limit"
		if env.coins, err = coinDenomination(ks, cfg.Cipher, time.Now()); err != nil {
			return err
		}
		if b := rsaModulusBits(env.coins.Key); b > 0 {
			rsaBits = b
		}
	}
	prog.Status("generating or loading %s (%s) ...", what, cfg.Cipher)
	keys, denom, info, err := loadOrGenerateKeys(cfg.KeysFile, cfg.Cipher, rsaBits)
	prog.Clear()
	if err != nil {
		return err
	}
	if cfg.BankData != "" && info.RSABits != rsaModulusBits(env.coins.Key) {
		return fmt.Errorf("--keys %s holds an RSA-%d denomination, and the bank's is RSA-%d: the limit would measure the wrong key size", cfg.KeysFile, info.RSABits, rsaModulusBits(env.coins.Key))
	}
	env.keys, env.denom, rep.Keys = keys, denom, info
	if cfg.BankData == "" {
		env.coins = denom.Denomination
		if err := startBanks(ctx, env); err != nil {
			return err
		}
	} else {
		// The running bank's private keys stay with it: the limit is
		// measured with keys of the same cipher and size.
		rep.Keys.StandIn, rep.Keys.Denomination = true, env.coins.Value.String()
		rep.External = &externalReport{BankData: cfg.BankData, BankAddr: env.banks[0].addr, MerchantData: cfg.MerchantData}
	}
	prog.Note("keys: %s", rep.Keys.describe())
	if cfg.Scenario != scenarioPay && cfg.Scenario != scenarioCheck {
		return nil
	}
	if cfg.MerchantData != "" {
		if err := attachMerchant(ctx, env, cfg.MerchantData, cfg.BankData, rep); err != nil {
			return err
		}
		rep.External.MerchantAddr = env.merchants[0].addr
		return nil
	}
	return startMerchants(ctx, env, cfg.Scenario)
}

// startBanks starts the bank (--replicas of them over PostgreSQL) as
// bankd does, on loopback with TLS, under its profiler label.
func startBanks(ctx context.Context, env *environment) error {
	for i := range env.store.Replicas {
		bankDir := filepath.Join(env.dir, "bank")
		if i > 0 {
			bankDir = filepath.Join(env.dir, fmt.Sprintf("bank%d", i+1))
		}
		if err := os.MkdirAll(bankDir, 0o700); err != nil {
			return err
		}
		// Every replica holds the same keys (docs/OPERATIONS.md).
		if err := env.keys.Save(filepath.Join(bankDir, bank.KeysFile)); err != nil {
			return err
		}
		cfg := node.BankConfig{
			Dir: bankDir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: env.keys.Currency},
			// Rate limits are policy, not capacity: off, as for any load
			// test (the merchant deposits every payment from one address).
			// The caps on calls in progress stay, as in production, above
			// what the merchant's one address can have open (a deposit per
			// wallet, and its own calls beside them).
			Limits: node.RateLimits{PerPeer: -1, PerAccount: -1, CallsPerPeer: 2 * maxConcurrency},
		}
		if env.pg != nil {
			cfg.Store = env.pg.banks
		}
		var (
			b   *node.Bank
			err error
		)
		labeled(ctx, roleBank, func(context.Context) { b, err = node.StartBank(cfg) })
		if err != nil {
			return fmt.Errorf("starting bank replica %d: %w", i+1, err)
		}
		env.bankNodes = append(env.bankNodes, b)
		env.banks = append(env.banks, endpoint{addr: b.Addr, tls: transport.ClientConfig{Pin: b.Fingerprint}})
	}
	if env.pg == nil {
		env.ledger = filepath.Join(env.dir, "bank", "ledger")
	}
	conn, err := transport.DialAdmin(env.bankNodes[0].AdminAddr, env.bankNodes[0].Token)
	if err != nil {
		return err
	}
	env.conns = append(env.conns, conn)
	env.bankAdmin = pb.NewBankAdminClient(conn)
	return nil
}

// startMerchants starts a merchant per bank as merchantd does (for check
// with a catalogue of one product).
func startMerchants(ctx context.Context, env *environment, s scenarioKind) error {
	catalogue := ""
	if s == scenarioCheck {
		catalogue = filepath.Join(env.dir, "catalogue")
		if err := writeCatalogue(catalogue, env.coins.Value); err != nil {
			return err
		}
	}
	for i, b := range env.banks {
		if err := startMerchant(ctx, env, i, b, catalogue); err != nil {
			return err
		}
	}
	return nil
}

// startMerchant starts merchant i, with its own account and store, over
// bank b.
func startMerchant(ctx context.Context, env *environment, i int, b endpoint, catalogue string) error {
	mDir := filepath.Join(env.dir, "merchant")
	name := "loadgen merchant"
	if i > 0 {
		mDir = filepath.Join(env.dir, fmt.Sprintf("merchant%d", i+1))
		name = fmt.Sprintf("loadgen merchant %d", i+1)
	}
	pub, err := merchant.Init(mDir)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	acct, err := env.bankAdmin.OpenAccount(cctx, &pb.OpenAccountRequest{Name: name, PublicKey: pub, Merchant: true})
	if err != nil {
		return fmt.Errorf("opening the merchant's account: %w", err)
	}
	var m *node.Merchant
	labeled(cctx, roleMerchant, func(ctx context.Context) {
		m, err = node.StartMerchant(ctx, node.MerchantConfig{
			Dir: mDir, BankAddr: b.addr, BankTLS: b.tls,
			Account: acct.Account, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Catalogue: catalogue,
		})
	})
	if err != nil {
		return fmt.Errorf("starting the merchant: %w", err)
	}
	env.merchantNodes = append(env.merchantNodes, m)
	env.merchants = append(env.merchants, endpoint{addr: m.Addr, tls: transport.ClientConfig{Pin: m.Fingerprint}})
	mconn, err := transport.DialAdmin(m.AdminAddr, m.Token)
	if err != nil {
		return err
	}
	env.conns = append(env.conns, mconn)
	env.mAdmins = append(env.mAdmins, pb.NewMerchantAdminClient(mconn))
	return nil
}

// eachWallet runs f for wallets 0..n-1 concurrently under the client
// label (so the connections the wallets open are labelled too). f bounds
// its own calls with opTimeout.
func eachWallet(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	errs := make([]error, n)
	labeled(ctx, roleClient, func(ctx context.Context) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if err := f(ctx, i); err != nil {
					errs[i] = fmt.Errorf("wallet %d: %w", i, err)
				}
			})
		}
		wg.Wait()
	})
	return errors.Join(errs...)
}

// maxPrewithdraw bounds the time spent withdrawing coins for the pay
// scenario (RSA coins cost the bank milliseconds each).
const maxPrewithdraw = 10 * time.Minute

// preparePay withdraws the coins and creates the orders the timed phase
// will pay, after an untimed warm-up of warmupOps payments per wallet.
// Without cfg.Coins, the wallets are stocked for a phase running at the
// crypto limit (rep.Limit) for all of cfg.Duration, with payMargin to
// spare: the end-to-end rate cannot exceed that limit, so the phase cannot
// run out, whatever the rate turns out to be. At most cfg.MaxCoins coins
// are withdrawn, and no more than the warm-up's withdrawal rate yields in
// maxPrewithdraw.
func preparePay(ctx context.Context, env *environment, cfg runConfig, rep *report, op func(context.Context, *simWallet) error) error {
	prog, n, conc := cfg.Progress, cfg.CoinsPerOp, cfg.Concurrency
	amount := ecash.Amount{Currency: env.coins.Value.Currency, Value: env.coins.Value.Value * uint64(n)}.String()
	start := time.Now()
	var withdrawn atomic.Int64
	// stock brings every wallet to opsEach payments' worth of coins and
	// orders and returns the coins per second it withdrew at.
	stock := func(opsEach int) (float64, error) {
		total := int64(0)
		for _, w := range env.wallets {
			total += int64(max(0, opsEach*n-len(w.coins)))
		}
		t0, w0 := time.Now(), withdrawn.Load()
		stop := make(chan struct{})
		go tick(stop, func() {
			prog.Status("withdrawing coins for the pay scenario: %d/%d", withdrawn.Load()-w0, total)
		})
		err := eachWallet(ctx, conc, func(ctx context.Context, i int) error {
			w := env.wallets[i]
			if err := w.stock(ctx, max(0, opsEach*n-len(w.coins)), func(k int) { withdrawn.Add(int64(k)) }); err != nil {
				return err
			}
			for len(w.orders) < opsEach {
				cctx, cancel := context.WithTimeout(ctx, opTimeout)
				o, err := w.mAdmin.CreateOrder(cctx, &pb.CreateOrderRequest{Amount: amount, Summary: orderSummary, TtlSeconds: int64(orderTTL / time.Second)})
				cancel()
				if err != nil {
					return fmt.Errorf("creating an order: %w", err)
				}
				so := simOrder{id: o.OrderId}
				if cfg.PayFromURI {
					if o.PaymentUri == "" {
						return fmt.Errorf("order %s has no payment URI: the merchant has no public address (merchantd serve --public-addr)", o.OrderId)
					}
					so.uri = o.PaymentUri
				}
				w.orders = append(w.orders, so)
			}
			// Open the connection to the merchant before anything is timed.
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			defer cancel()
			_, err := w.merchant.GetPaymentRequest(cctx, &pb.GetPaymentRequestRequest{OrderId: w.orders[0].id})
			return err
		})
		close(stop)
		prog.Clear()
		if err != nil {
			return 0, err
		}
		got, secs := withdrawn.Load()-w0, time.Since(t0).Seconds()
		prog.Note("withdrew %d coins and created orders in %.1fs", got, secs)
		return float64(got) / secs, nil
	}

	wrate, err := stock(min(warmupOps, max(1, cfg.Coins/(conc*n))))
	if err != nil {
		return err
	}
	res, err := runPhase(ctx, env.wallets, 5*time.Minute, 0, n, op, func(s phaseStatus) {
		prog.Status("warm-up: %d payments", s.ops)
	})
	prog.Clear()
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rep.Setup.WarmupCoins = res.coins
	if res.ops > 0 && res.elapsed > 0 {
		rep.Setup.WarmupOpsPerSec = float64(res.ops) / res.elapsed.Seconds()
	}
	var opsEach int
	if cfg.Coins > 0 {
		opsEach = max(1, cfg.Coins/(conc*n))
	} else {
		rate := rep.Limit.CoinsPerSec
		if cfg.Rate > 0 {
			rate = min(rate, cfg.Rate*float64(n))
		}
		need := rate * cfg.Duration.Seconds() * payMargin
		opsEach = int(math.Ceil(need/float64(conc*n))) + 1
		prog.Note("warm-up: %.0f payments/s; stocking each wallet for %d payments (the crypto limit for %s)", rep.Setup.WarmupOpsPerSec, opsEach, cfg.Duration)
		if maxEach := int(wrate*maxPrewithdraw.Seconds()) / (conc * n); opsEach > maxEach {
			prog.Note("withdrawing at %.0f coins/s, %s buys %d payments per wallet: the timed phase may end early", wrate, maxPrewithdraw, maxEach)
			opsEach = max(1, maxEach)
		}
	}
	if maxEach := cfg.MaxCoins / (conc * n); opsEach > maxEach {
		prog.Note("capping the pre-withdrawal at %d coins (--max-coins): the timed phase may end early", cfg.MaxCoins)
		opsEach = max(1, maxEach)
	}
	if _, err := stock(opsEach); err != nil {
		return err
	}
	rep.Setup.PrewithdrawnCoins = withdrawn.Load()
	rep.Setup.PrewithdrawSeconds = time.Since(start).Seconds()
	return nil
}

// prepareSwap stocks every wallet with the coins of one swap, which it then
// swaps again and again (each swap's outputs are the next one's inputs),
// and warms up with warmupOps untimed swaps per wallet.
func prepareSwap(ctx context.Context, env *environment, cfg runConfig, rep *report, op func(context.Context, *simWallet) error) error {
	prog, n := cfg.Progress, cfg.CoinsPerOp
	start := time.Now()
	var withdrawn atomic.Int64
	prog.Status("withdrawing %d coins for the swap scenario ...", n*cfg.Concurrency)
	err := eachWallet(ctx, cfg.Concurrency, func(ctx context.Context, i int) error {
		return env.wallets[i].stock(ctx, n, func(k int) { withdrawn.Add(int64(k)) })
	})
	prog.Clear()
	if err != nil {
		return err
	}
	rep.Setup.PrewithdrawnCoins = withdrawn.Load()
	rep.Setup.PrewithdrawSeconds = time.Since(start).Seconds()
	return warmUp(ctx, env, cfg, rep, op)
}

// prepareCheck has every wallet learn the till's account and key (opening
// its connection to the merchant) and warms up with warmupOps untimed
// payment orders per wallet.
func prepareCheck(ctx context.Context, env *environment, cfg runConfig, rep *report, op func(context.Context, *simWallet) error) error {
	// One wallet first: a till that cannot serve the scenario says so once.
	learn := func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		return env.wallets[i].learnMerchant(ctx, cfg.EPOKind)
	}
	if err := learn(ctx, 0); err != nil {
		return err
	}
	err := eachWallet(ctx, cfg.Concurrency, func(ctx context.Context, i int) error {
		if i == 0 {
			return nil
		}
		return learn(ctx, i)
	})
	if err != nil {
		return err
	}
	return warmUp(ctx, env, cfg, rep, op)
}

// warmUp runs op warmupOps times per wallet, untimed (the phase stops when
// the first wallet is done), and records it in rep.Setup.
func warmUp(ctx context.Context, env *environment, cfg runConfig, rep *report, op func(context.Context, *simWallet) error) error {
	done := make([]int, len(env.wallets))
	limited := func(ctx context.Context, w *simWallet) error {
		if done[w.id] >= warmupOps {
			return errExhausted
		}
		done[w.id]++
		return op(ctx, w)
	}
	res, err := runPhase(ctx, env.wallets, 5*time.Minute, 0, cfg.CoinsPerOp, limited, func(s phaseStatus) {
		cfg.Progress.Status("warm-up: %d operations", s.ops)
	})
	cfg.Progress.Clear()
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rep.Setup.WarmupCoins = res.coins
	if res.ops > 0 && res.elapsed > 0 {
		rep.Setup.WarmupOpsPerSec = float64(res.ops) / res.elapsed.Seconds()
	}
	return nil
}

// tick calls f about once a second until stop is closed.
func tick(stop <-chan struct{}, f func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f()
		}
	}
}

// phaseStatus is the state of a running phase, for the progress line.
type phaseStatus struct {
	elapsed    time.Duration
	ops, coins int64
	rate       float64 // coins/s over the last second
}

type phaseResult struct {
	ops, coins int64
	elapsed    time.Duration // from the start to the last operation's end
	latencies  []time.Duration
	exhausted  bool
}

// runPhase runs op on every wallet until d has passed (an operation in
// flight finishes), a wallet has nothing left (errExhausted: then all
// stop), an operation fails, or ctx ends: back to back, or with rate > 0 on
// a fixed schedule of rate operations per second in all, the wallets
// staggered evenly. A paced operation's latency counts from its scheduled
// start, so one that waits for its predecessor counts the wait (no
// coordinated omission). The wallets run under the client label.
func runPhase(ctx context.Context, ws []*simWallet, d time.Duration, rate float64, n int, op func(context.Context, *simWallet) error, status func(phaseStatus)) (phaseResult, error) {
	var (
		ops, coins atomic.Int64
		stop       atomic.Bool
		exhausted  atomic.Bool
		mu         sync.Mutex
		lats       []time.Duration
		last       time.Time
		errs       = make([]error, len(ws))
	)
	start := time.Now()
	deadline := start.Add(d)
	done := make(chan struct{})
	go func() {
		prev := int64(0)
		tick(done, func() {
			c := coins.Load()
			status(phaseStatus{elapsed: time.Since(start), ops: ops.Load(), coins: c, rate: float64(c - prev)})
			prev = c
		})
	}()
	labeled(ctx, roleClient, func(ctx context.Context) {
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Go(func() {
				var mine []time.Duration
				end := start
				// scheduled is the start of the wallet's k-th operation
				// when paced.
				scheduled := func(k int) time.Time {
					return start.Add(time.Duration((float64(k) + float64(i)/float64(len(ws))) * float64(len(ws)) / rate * float64(time.Second)))
				}
				for k := 0; !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline); k++ {
					var t0 time.Time
					if rate > 0 {
						if t0 = scheduled(k); !t0.Before(deadline) {
							break
						}
						if !sleepUntil(ctx, t0) {
							break
						}
					}
					octx, cancel := context.WithTimeout(ctx, opTimeout)
					if rate == 0 {
						t0 = time.Now()
					}
					err := op(octx, w)
					t1 := time.Now()
					cancel()
					if errors.Is(err, errExhausted) {
						exhausted.Store(true)
						stop.Store(true)
						break
					}
					if err != nil {
						errs[i] = fmt.Errorf("wallet %d: %w", w.id, err)
						stop.Store(true)
						break
					}
					mine = append(mine, t1.Sub(t0))
					end = t1
					ops.Add(1)
					coins.Add(int64(n))
				}
				mu.Lock()
				lats = append(lats, mine...)
				if end.After(last) {
					last = end
				}
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	close(done)
	if err := errors.Join(errs...); err != nil {
		return phaseResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return phaseResult{}, err
	}
	elapsed := last.Sub(start)
	if rate > 0 && !exhausted.Load() {
		// The schedule, not the last operation, spans the phase: its last
		// slot may end before the deadline.
		elapsed = max(elapsed, d)
	}
	return phaseResult{ops: ops.Load(), coins: coins.Load(), elapsed: elapsed, latencies: lats, exhausted: exhausted.Load()}, nil
}

// startTrace starts an execution trace into the file path, if any; the
// returned function stops it and closes the file.
func startTrace(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("execution trace: %w", err)
	}
	return func() error {
		trace.Stop()
		return f.Close()
	}, nil
}

// writeAllocs writes the allocation profile so far to path+suffix, if path
// is not "". The GC first publishes the allocations since the last cycle.
// It runs before the phase's CPU is first read and after it is last read,
// so neither call is charged to the phase.
func writeAllocs(path, suffix string) error {
	if path == "" {
		return nil
	}
	runtime.GC()
	f, err := os.Create(path + suffix)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	return f.Close()
}

// sleepUntil waits until t, or returns false if ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func perCoinUs(d time.Duration, coins int64) float64 {
	if coins == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(coins)
}

// latencies summarises operation latencies in milliseconds (nearest-rank
// percentiles).
func latencies(ls []time.Duration) latencyReport {
	if len(ls) == 0 {
		return latencyReport{}
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	pct := func(p float64) float64 { return ms(nearestRank(s, p)) }
	var sum time.Duration
	for _, l := range s {
		sum += l
	}
	return latencyReport{
		P50: pct(0.50), P95: pct(0.95), P99: pct(0.99), Max: ms(s[len(s)-1]),
		Mean: ms(sum / time.Duration(len(s))),
	}
}

// nearestRank is the p-th quantile of sorted (not empty): the smallest
// value at least a fraction p of the values are at or under.
func nearestRank(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
