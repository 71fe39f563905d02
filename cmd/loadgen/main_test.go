package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/blindbank/blindbank/bank/pgstore"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/cli/clitest"
	"github.com/blindbank/blindbank/cmd/internal/procs"
)

// TestMain lets the test binary run as loadgen, bankd, merchantd or wallet
// inside the scripts.
func TestMain(m *testing.M) {
	cmds := clitest.Commands()
	cmds["loadgen"] = func() { os.Exit(cli.Main(command())) }
	testscript.Main(m, cmds)
}

// TestScript runs testdata/script/*.txtar: loadgen against bankd and
// merchantd processes, as an operator runs them.
func TestScript(t *testing.T) { testscript.Run(t, clitest.Params("testdata/script")) }

// loadgen runs the command in-process as a user would type it.
func loadgen(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), command(), &cli.Env{Stdout: &out, Stderr: &errb}, args)
	return out.String(), errb.String(), code
}

// loadgenJSON runs the command, which must succeed, and decodes its --json
// output into v; it returns what the command wrote to stderr.
func loadgenJSON(t *testing.T, v any, args ...string) (stderr string) {
	t.Helper()
	out, stderr, code := loadgen(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return stderr
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"},
		{"run", "--help"},
		{"limits", "--help"},
		{"targets", "--help"},
		{"fsync", "--help"},
		{"help", "run"},
	} {
		out, _, code := loadgen(t, args...)
		if code != cli.ExitOK {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, want := range []string{"Usage: loadgen", "--json"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
	}
	// Help speaks to a user: no private jargon, a placeholder for every value.
	out, _, _ := loadgen(t, "targets", "--help")
	for _, jargon := range []string{"issue 7", "gonuts' mint"} {
		if strings.Contains(out, jargon) {
			t.Errorf("targets --help says %q", jargon)
		}
	}
	if !strings.Contains(out, "docs/PERFORMANCE.md") {
		t.Errorf("targets --help does not point to docs/PERFORMANCE.md")
	}
	out, _, _ = loadgen(t, "fsync", "--help")
	if !strings.Contains(out, "--rate N ") || strings.Contains(out, "float") {
		t.Errorf("fsync --help shows --rate without a placeholder:\n%s", out)
	}
	out, _, _ = loadgen(t, "run", "--help")
	for _, want := range []string{"--scenario", "--cipher", "--coins-per-op", "--concurrency", "--duration", "--cpuprofile", "--memprofile", "--epo", "--pay-request", "swap", "check", "fraction", "getrusage", "--store", "--replicas", "--prefill-spent", "--pool"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "--scenario", "refund"},
		{"run", "--scenario", "pay", "--cipher", "dsa"},
		{"run", "--scenario", "check", "--coins-per-op", "2"},
		{"run", "--scenario", "check", "--epo", "cash"},
		{"run", "--scenario", "swap", "--coins-per-op", "-1"},
		{"run", "--scenario", "pay", "--concurrency", "0"},
		{"run", "--scenario", "pay", "--duration", "11m"},
		{"run", "--scenario", "pay", "--rate", "-1"},
		{"run", "--scenario", "pay", "--rate", "NaN"},
		{"run", "--scenario", "withdraw", "--coins-per-op", "1025"},
		{"run", "--scenario", "pay", "--replicas", "2"}, // replicas need PostgreSQL
		{"run", "--scenario", "pay", "--store", "sqlite"},
		{"run", "--scenario", "pay", "--store", "postgres", "--replicas", "0"},
		{"run", "--scenario", "pay", "--store", "postgres", "--replicas", "17"},
		{"run", "--scenario", "pay", "--prefill-spent", "-1"},
		{"run", "--scenario", "pay", "--pool", "8"}, // PostgreSQL only
		{"run", "--scenario", "pay", "--store", "postgres", "--pool", "65"},
		{"run", "--scenario", "pay", "--merchant-data", "shop"}, // needs --bank-data
		{"run", "--scenario", "pay", "--test-bank"},
		{"run", "--scenario", "pay", "--pay-request", "qr"},
		{"run", "--scenario", "withdraw", "--pay-request", "uri"},
		{"run", "--scenario", "pay", "--bank-data", "bank"}, // needs --test-bank
		{"run", "--scenario", "swap", "--bank-data", "bank", "--test-bank", "--merchant-data", "shop"},
		{"run", "--scenario", "pay", "--bank-data", "bank", "--test-bank", "--store", "postgres"},
		{"run", "--scenario", "pay", "--bank-data", "bank", "--test-bank", "--prefill-spent", "10"},
		{"limits", "--scenario", "refund"},
		{"limits", "extra"},
		{"targets", "--runs", "0"},
		{"targets", "--runs", "51"},
		{"targets", "--duration", "500ms"},
		{"targets", "--limit-time", "1ms"},
		{"targets", "--only", "pay-cs,refund"},
		{"targets", "extra"},
		{"fsync", "--duration", "500ms"},
		{"fsync", "--rate", "0"},
		{"fsync", "--rate", "NaN"},
		{"fsync", "--size", "0"},
		{"fsync", "--size", "1048577"},
		{"fsync", "--rate", "1000", "--duration", "1h"}, // 3.6M syncs
		{"fsync", "extra"},
	} {
		_, stderr, code := loadgen(t, args...)
		if code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, cli.ExitUsage, stderr)
		}
	}
}

func TestLimits(t *testing.T) {
	var rep limitsReport
	loadgenJSON(t, &rep, "limits", "--cipher", "cs", "--coins-per-op", "2", "--duration", "100ms", "--json")
	want := []string{"withdraw", "pay", "swap", "check"}
	if len(rep.Limits) != len(want) {
		t.Fatalf("limits: %+v", rep.Limits)
	}
	for i, l := range rep.Limits {
		n, unit := 2, "coin"
		if l.Scenario == "check" {
			n, unit = 1, "check" // a check carries no coins
		}
		if l.Scenario != want[i] || l.Coins <= 0 || l.CoinsPerSec <= 0 || l.CoinsPerOp != n || l.Unit != unit || l.Cipher != "cs" {
			t.Errorf("%s: %+v", l.Scenario, l)
		}
		merchant := l.Scenario == "pay" || l.Scenario == "check"
		if l.WalletUs <= 0 || l.BankUs <= 0 || (merchant && l.MerchantUs <= 0) || (!merchant && l.MerchantUs != 0) {
			t.Errorf("%s: a party did no work, or work it has no part in: %+v", l.Scenario, l)
		}
	}
	// The goods variant of check, and swap's default of 4 coins.
	rep = limitsReport{}
	loadgenJSON(t, &rep, "limits", "--scenario", "check", "--epo", "goods", "--duration", "50ms", "--json")
	if len(rep.Limits) != 1 || rep.Limits[0].EPOKind != "goods" || rep.Limits[0].Coins <= 0 {
		t.Errorf("check, goods: %+v", rep.Limits)
	}
	rep = limitsReport{}
	loadgenJSON(t, &rep, "limits", "--scenario", "swap", "--duration", "50ms", "--json")
	if len(rep.Limits) != 1 || rep.Limits[0].CoinsPerOp != 4 {
		t.Errorf("swap by default: %+v", rep.Limits)
	}
}

// payCoins are withdrawn for the RSA pay run: enough for a few hundred
// milliseconds of payments, few enough to issue quickly.
const payCoins = 256

// TestRun runs each scenario briefly with both ciphers and checks that the
// report holds together. No timing thresholds: only coherence.
func TestRun(t *testing.T) {
	// GOMAXPROCS above the cores, as main sets it (procs.Raise): the limit
	// must still run one worker per core, and leave GOMAXPROCS as it was.
	gomaxprocs := procs.Cores() + procs.Extra
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(gomaxprocs))
	// One RSA key for all RSA runs: the others load what the first saved.
	keys := map[string]string{"rsa": filepath.Join(t.TempDir(), "rsa-keys.json"), "cs": filepath.Join(t.TempDir(), "cs-keys.json")}
	for _, cipher := range []string{"cs", "rsa"} {
		for _, variant := range []string{"withdraw", "pay", "pay-uri", "swap", "check"} {
			if variant == "pay-uri" && cipher == "rsa" {
				continue // how the request travels does not depend on the cipher
			}
			scenario, _, uri := strings.Cut(variant, "-")
			t.Run(variant+"-"+cipher, func(t *testing.T) {
				args := []string{"run", "--scenario", scenario, "--cipher", cipher, "--concurrency", "2",
					"--duration", "1s", "--limit-time", "200ms", "--keys", keys[cipher], "--json"}
				if uri {
					args = append(args, "--pay-request", "uri")
				}
				switch {
				case scenario == "check" && cipher == "rsa":
					// The cipher does not matter to a check: try the
					// other kind of payment order.
					args = append(args, "--epo", "goods")
				case scenario != "check":
					args = append(args, "--coins-per-op", "2")
				}
				if scenario == "pay" && cipher == "rsa" {
					// RSA coins cost milliseconds each to issue: a fixed
					// number, which the phase may use up (it then ends
					// early, and says so). CS pay sizes them itself.
					args = append(args, "--coins", strconv.Itoa(payCoins))
				}
				out, stderr, code := loadgen(t, args...)
				if code != cli.ExitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if !strings.Contains(stderr, "crypto limit of "+scenario) {
					t.Errorf("no progress notes on stderr: %q", stderr)
				}
				var r report
				if err := json.Unmarshal([]byte(out), &r); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				checkReport(t, &r, scenario, cipher)
				// The calls each operation costs: withdraw 1 (RSA) or 2 (CS: the
				// first round), pay 3 (fetch the request, pay, and the merchant's
				// deposit) or 2 from a payment URI, swap 1 or 2, check 2 (the
				// written check and its forwarding to the bank) or 4 with goods
				// (a quote and the goods first).
				wantRPCs := map[string]float64{"withdraw": 1, "pay": 3, "swap": 1, "check": 2}[scenario]
				switch {
				case uri:
					wantRPCs = 2
				case scenario == "check" && cipher == "rsa": // --epo goods
					wantRPCs = 4
				case cipher == "cs" && (scenario == "withdraw" || scenario == "swap"):
					wantRPCs++
				}
				if r.RPCsPerOp != wantRPCs {
					t.Errorf("%v RPCs served per operation, want %v", r.RPCsPerOp, wantRPCs)
				}
				wantRequest := map[bool]string{false: "fetch", true: "uri"}[uri]
				if scenario != "pay" {
					wantRequest = ""
				}
				if r.PayRequest != wantRequest {
					t.Errorf("pay request %q, want %q", r.PayRequest, wantRequest)
				}
				if g := runtime.GOMAXPROCS(0); g != gomaxprocs || r.Machine.GOMAXPROCS != gomaxprocs {
					t.Errorf("GOMAXPROCS %d after the run, %d in the report; want %d", g, r.Machine.GOMAXPROCS, gomaxprocs)
				}
			})
		}
	}
}

func checkReport(t *testing.T, r *report, scenario, cipher string) {
	t.Helper()
	n, unit, epo := int64(2), "coin", ""
	if scenario == "check" {
		n, unit, epo = 1, "check", "check"
		if cipher == "rsa" {
			epo = "goods"
		}
	}
	if r.Scenario != scenario || r.Cipher != cipher || int64(r.CoinsPerOp) != n || r.Concurrency != 2 || r.Unit != unit || r.EPOKind != epo {
		t.Errorf("report for the wrong run: %+v", r)
	}
	if r.Ops <= 0 || r.Coins != n*r.Ops {
		t.Errorf("ops %d, coins %d", r.Ops, r.Coins)
	}
	if r.Elapsed <= 0 || r.OpsPerSec <= 0 || r.CoinsPerSec <= 0 {
		t.Errorf("elapsed %v, ops/s %v, coins/s %v", r.Elapsed, r.OpsPerSec, r.CoinsPerSec)
	}
	if r.EndedEarly == "" && r.Elapsed < r.Duration {
		t.Errorf("the phase took %vs of %vs and did not say it ended early", r.Elapsed, r.Duration)
	}
	l := r.Latency
	if !(0 < l.P50 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	for _, lim := range []limitResult{r.Limit, r.LimitAfter} {
		if lim.Workers != procs.Cores() || lim.CoinsPerSec <= 0 || lim.Scenario != scenario || lim.Cipher != cipher || int64(lim.CoinsPerOp) != n || lim.Unit != unit || lim.EPOKind != epo {
			t.Errorf("crypto limit: %+v", lim)
		}
	}
	if !(r.Fraction > 0 && r.Fraction <= 1.5) {
		t.Errorf("fraction of the limit %v, want in (0, 1.5]", r.Fraction)
	}
	// Against the mean of the limits before and after the phase.
	if want := 2 * r.CoinsPerSec / (r.Limit.CoinsPerSec + r.LimitAfter.CoinsPerSec); math.Abs(r.Fraction-want) > 1e-9*want {
		t.Errorf("fraction %v, want coins/s over the mean limit: %v", r.Fraction, want)
	}
	if r.CPU.ProcessUs <= 0 {
		t.Errorf("process CPU per coin %v", r.CPU.ProcessUs)
	}
	if c := r.CPU; c.BankUs != nil { // nil if go test itself is profiling
		sum := *c.BankUs + *c.MerchantUs + *c.WalletUs + *c.StorageUs + *c.RuntimeUs
		if min(*c.BankUs, *c.MerchantUs, *c.WalletUs, *c.StorageUs, *c.RuntimeUs) < 0 || sum > c.ProcessUs*1.001 || sum < c.ProcessUs*0.999 {
			t.Errorf("CPU split does not add up: %+v (bank %v merchant %v wallets %v runtime %v)", c, *c.BankUs, *c.MerchantUs, *c.WalletUs, *c.RuntimeUs)
		}
		// With enough samples (100 a second) the bank shows; smaller
		// shares (RSA wallets: a few percent) may not, in so short a run.
		if c.Samples >= 300 && *c.BankUs <= 0 {
			t.Errorf("the bank has no CPU in %d ms of samples", c.Samples)
		}
	}
	switch c := r.Commits; {
	case r.Store.Postgres != nil:
		if c != nil {
			t.Errorf("commits over PostgreSQL, which does not observe them: %+v", c)
		}
	case c == nil:
		t.Error("no report of the bank's commits")
	case c.Commits == 0 || c.OpsPerCommit < 1 || c.Slow > c.Commits || c.SlowOverMs < 1000*slowCommitFrom ||
		!(0 < c.P50Ms && c.P50Ms <= c.P99Ms && (c.P99Ms <= c.MaxMs || c.MaxMs == -1)):
		t.Errorf("commits: %+v", c)
	}
	d := r.Disk
	if r.Prefill != nil && r.Store.Postgres == nil {
		// Pebble is not compacted after a prefill: no figures at rest.
		if d.StoreBytes <= 0 || d.Note == "" {
			t.Errorf("disk after a prefill: %+v", d)
		}
		return
	}
	if d.StoreBytes <= 0 || d.AtRestBytes <= 0 {
		t.Errorf("disk: %+v", d)
	}
	switch scenario {
	case "check":
		if d.Checks < r.Ops || d.IssuedCoins != 0 || d.AtRestBytesPerCheck <= 0 {
			t.Errorf("disk after %d checks: %+v", r.Ops, d)
		}
	case "swap":
		if d.SwappedCoins < r.Coins || d.IssuedCoins != d.SwappedCoins+r.Setup.PrewithdrawnCoins || r.Setup.PrewithdrawnCoins != 2*2 {
			t.Errorf("disk after swapping %d coins (%d withdrawn first): %+v", r.Coins, r.Setup.PrewithdrawnCoins, d)
		}
	default:
		if d.IssuedCoins < r.Coins || d.AtRestBytesPerCoin <= 0 {
			t.Errorf("disk: %+v", d)
		}
	}
	if scenario == "pay" && d.PaidCoins < r.Coins {
		t.Errorf("paid %d coins, %d in the timed phase", d.PaidCoins, r.Coins)
	}
	if (scenario == "swap" || scenario == "check" || scenario == "pay") && r.Setup.WarmupCoins <= 0 {
		t.Errorf("no warm-up: %+v", r.Setup)
	}
	if scenario == "pay" && cipher == "rsa" && r.Setup.PrewithdrawnCoins < payCoins {
		t.Errorf("pre-withdrew %d coins, asked for %d", r.Setup.PrewithdrawnCoins, payCoins)
	}
	if r.Keys.Cipher != cipher || r.Keys.Denomination != "EUR:0.01" {
		t.Errorf("keys: %+v", r.Keys)
	}
}

// TestPrefill runs pay over a Pebble store holding spent coins written
// before the timed phase.
// TestRate runs a paced phase: 20 operations a second over two wallets for
// a second schedules exactly 20, and none beyond the schedule may run. It
// also takes an execution trace and the allocation profiles of the phase.
func TestRate(t *testing.T) {
	dir := t.TempDir()
	traceFile, memFile := filepath.Join(dir, "swap.trace"), filepath.Join(dir, "swap.mem")
	var r report
	loadgenJSON(t, &r, "run", "--scenario", "swap", "--coins-per-op", "2", "--concurrency", "2",
		"--duration", "1s", "--limit-time", "100ms", "--rate", "20", "--trace", traceFile, "--memprofile", memFile, "--json")
	checkReport(t, &r, "swap", "cs")
	if r.Rate != 20 {
		t.Errorf("report says rate %v, want 20", r.Rate)
	}
	if r.Ops > 20 {
		t.Errorf("%d operations in a phase that schedules 20", r.Ops)
	}
	tr, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(tr, []byte("go 1.")) || len(tr) < 1000 {
		t.Errorf("not an execution trace: %d bytes starting %q", len(tr), tr[:min(len(tr), 16)])
	}
	for _, f := range []string{memFile + ".base", memFile} {
		p, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// pprof's format: gzipped protobuf, naming its sample types.
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil || !bytes.Contains(raw, []byte("alloc_space")) {
			t.Errorf("%s: not an allocation profile (%v)", f, err)
		}
	}
}

func TestPrefill(t *testing.T) {
	const n = 1000
	var r report
	stderr := loadgenJSON(t, &r, "run", "--scenario", "pay", "--coins-per-op", "2", "--concurrency", "2",
		"--duration", "500ms", "--limit-time", "100ms", "--prefill-spent", strconv.Itoa(n), "--json")
	checkReport(t, &r, "pay", "cs")
	p := r.Prefill
	if p == nil || p.SpentCoins != n || p.Seconds <= 0 || p.CoinsPerSec <= 0 || p.StoreBytes <= 0 {
		t.Errorf("prefill: %+v", p)
	}
	if r.Store.Kind != "pebble" || r.Store.Replicas != 1 || r.Store.Postgres != nil {
		t.Errorf("store: %+v", r.Store)
	}
	if !strings.Contains(stderr, "prefill: 1000 spent coins") {
		t.Errorf("no prefill note on stderr: %q", stderr)
	}
}

// TestPostgres runs scenarios over PostgreSQL: pay through two bank
// replicas (and two merchants) over a throwaway server, with a prefill,
// and withdraw through three; then a given database, which must not
// already hold a bank. Skipped without the PostgreSQL binaries, unless
// BLINDBANK_REQUIRE_POSTGRES=1.
func TestPostgres(t *testing.T) {
	if _, err := pgtest.FindBin(); err != nil {
		pgtest.Unavailable(t, err)
	}
	for _, tc := range []struct {
		scenario string
		replicas int
		prefill  int
		pool     int
	}{
		{"pay", 2, 300, 0},
		{"withdraw", 3, 0, 2},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.scenario, tc.replicas), func(t *testing.T) {
			args := []string{"run", "--scenario", tc.scenario, "--coins-per-op", "2", "--concurrency", "2",
				"--duration", "1s", "--limit-time", "100ms", "--store", "postgres", "--replicas", strconv.Itoa(tc.replicas), "--json"}
			if tc.prefill > 0 {
				args = append(args, "--prefill-spent", strconv.Itoa(tc.prefill))
			}
			if tc.pool > 0 {
				args = append(args, "--pool", strconv.Itoa(tc.pool))
			}
			var r report
			loadgenJSON(t, &r, args...)
			checkReport(t, &r, tc.scenario, "cs")
			p := r.Store.Postgres
			if r.Store.Kind != "postgres" || r.Store.Replicas != tc.replicas || p == nil {
				t.Fatalf("store: %+v", r.Store)
			}
			// Durable writes only: the throwaway server syncs every commit.
			if p.Server != "throwaway" || p.Fsync != "on" || p.SynchronousCommit != "on" || p.Version == "" || p.PoolPerReplica < 1 || (tc.pool > 0 && p.PoolPerReplica != tc.pool) {
				t.Errorf("PostgreSQL settings: %+v", p)
			}
			if p.Transactions <= 0 || p.WALSyncs <= 0 || p.WALBytesPerOp <= 0 || p.DatabaseBytes <= 0 || p.CPUUs < 0 || p.Backends <= 0 {
				t.Errorf("PostgreSQL figures: %+v", p)
			}
			if (tc.prefill > 0) != (r.Prefill != nil) || (r.Prefill != nil && (r.Prefill.SpentCoins != int64(tc.prefill) || r.Prefill.StoreBytes <= 0)) {
				t.Errorf("prefill: %+v", r.Prefill)
			}
		})
	}
	t.Run("given", func(t *testing.T) {
		srv := pgtest.New(t)
		ctx := t.Context()
		dsn, err := srv.CreateDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A database that holds a bank is refused: loadgen would move
		// money in it.
		st, err := pgstore.Open(ctx, dsn, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		_, stderr, code := loadgen(t, "run", "--scenario", "withdraw", "--duration", "200ms", "--limit-time", "50ms", "--store", pgURL(t, dsn))
		if code == cli.ExitOK || !strings.Contains(stderr, "already holds a bank") {
			t.Errorf("a database holding a bank: exit %d, %s", code, stderr)
		}
		empty, err := srv.CreateDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r report
		loadgenJSON(t, &r, "run", "--scenario", "withdraw", "--coins-per-op", "2", "--concurrency", "2", "--duration", "500ms",
			"--limit-time", "50ms", "--store", pgURL(t, empty), "--json")
		if p := r.Store.Postgres; p == nil || p.Server != "given" || p.CPUUs != -1 || r.Ops <= 0 {
			t.Errorf("given database: %+v %+v", r.Store, p)
		}
	})
}

// pgURL turns pgtest's keyword/value DSN into a postgres:// URL, the form
// --store takes (the socket directory as the host parameter).
func pgURL(t *testing.T, dsn string) string {
	t.Helper()
	q := url.Values{}
	var user, db string
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "user":
			user = v
		case "dbname":
			db = v
		default:
			q.Set(k, v)
		}
	}
	return (&url.URL{Scheme: "postgres", User: url.User(user), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// TestListens: a daemon's CPU is read only from the process that holds its
// listener.
func TestListens(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	if !listens(os.Getpid(), addr) {
		t.Errorf("this process listens on %s, and listens says no", addr)
	}
	if listens(os.Getppid(), addr) {
		t.Errorf("the parent process does not listen on %s, and listens says it does", addr)
	}
	c, err := net.Dial("tcp", addr) // a connected socket on another port is no listener
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if listens(os.Getpid(), c.LocalAddr().String()) {
		t.Errorf("%s is a client socket, not a listener", c.LocalAddr())
	}
	if listens(0, addr) || listens(os.Getpid(), "no-port") {
		t.Error("listens accepted a bad PID or address")
	}
}
