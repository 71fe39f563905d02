package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// fakeRuns answers each "loadgen run" from a table keyed by the scenario
// arguments, in order, and records the calls: the verdict logic is tested
// here, the child processes in testdata/script/targets.txtar.
type fakeRuns struct {
	calls   [][]string
	answers map[string][]any // key: strings.Join(args, " ") without --duration; a *report or an error
}

func (f *fakeRuns) run(_ context.Context, args []string) (*report, []byte, error) {
	f.calls = append(f.calls, args)
	i := slices.Index(args, "--duration")
	key := strings.Join(args[:i], " ")
	q := f.answers[key]
	if len(q) == 0 {
		return nil, nil, errors.New("unexpected run " + key)
	}
	a := q[0]
	f.answers[key] = q[1:]
	if err, ok := a.(error); ok {
		return nil, nil, err
	}
	raw, err := json.Marshal(a)
	return a.(*report), raw, err
}

func byName(t *testing.T, names ...string) []target {
	t.Helper()
	ts, err := chooseTargets(strings.Join(names, ","))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func key(tg target) string { return strings.Join(tg.Args, " ") }

func TestTargetVerdicts(t *testing.T) {
	ts := byName(t, "pay-cs", "swap-cs", "latency", "size")
	pay, swap, lat, size := ts[0], ts[1], ts[2], ts[3]
	f := &fakeRuns{answers: map[string][]any{
		key(pay):  {&report{Fraction: 0.52, Commits: &commitReport{SlowOverMs: 6.4, Slow: 40, LastMs: 3276.8, MaxMs: 12.8}}, &report{Fraction: 0.4999}, &report{Fraction: 0.55, CPU: cpuReport{OtherCores: 0.2}}},
		key(swap): {&report{OpsPerSec: 400}, errors.New("bank fell over"), &report{OpsPerSec: 420}},
		key(lat): {&report{Latency: latencyReport{P99: 4.9}, Commits: &commitReport{SlowOverMs: 6.4, LastMs: 3276.8, MaxMs: 3.2}},
			&report{Latency: latencyReport{P99: 12}, Commits: &commitReport{SlowOverMs: 6.4, Slow: 3, LastMs: 3276.8, MaxMs: 102.4}},
			&report{Latency: latencyReport{P99: 4}}},
		strings.Join(size.Base, " "): {&report{CPU: cpuReport{ProcessUs: 400}}, &report{CPU: cpuReport{ProcessUs: 400}}, &report{CPU: cpuReport{ProcessUs: 400}}, &report{CPU: cpuReport{ProcessUs: 0}}},
		key(size):                    {&report{CPU: cpuReport{ProcessUs: 440}}, errors.New("disk full"), &report{CPU: cpuReport{ProcessUs: 480}}, &report{CPU: cpuReport{ProcessUs: 480}}},
	}}
	// Rounds in the orders given; in the last, size's 1M run measures no
	// CPU.
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}, {3}}
	rep := measureTargets(context.Background(), ts, 4, 15*time.Second, 2*time.Second, func(round int) []int { return orders[round-1] }, f.run, nil)

	// Interleaved in each round's order; size's 1M run before its 10M run;
	// every run with the duration and limit time.
	var order []string
	for _, c := range f.calls {
		if !slices.Equal(c[len(c)-4:], []string{"--duration", "15s", "--limit-time", "2s"}) {
			t.Errorf("run %v: not the asked duration and limit time", c)
		}
		order = append(order, strings.Join(c[:len(c)-4], " "))
	}
	p, sw, l, sz := []string{key(pay)}, []string{key(swap)}, []string{key(lat)}, []string{strings.Join(size.Base, " "), key(size)}
	if want := slices.Concat(p, sw, l, sz, sz, l, sw, p, sw, sz, p, l, sz); !slices.Equal(order, want) {
		t.Errorf("runs in order\n%q\nwant\n%q", order, want)
	}

	type want struct {
		median  float64
		met     int
		failed  int
		verdict string
		shown   string
	}
	// Values are shown cut, so that one shown at the goal meets it.
	for i, w := range []want{
		{0.52, 2, 0, "met", "0.520, 0.499, 0.550"},
		{410, 0, 1, "missed", "400, 420"},
		{4.9, 2, 0, "met", "4.9 ms, 12.0 ms, 4.0 ms"},
		{0.15, 2, 2, "met", "+10%, +20%"},
	} {
		got := rep.Targets[i]
		if got.Median == nil || *got.Median < w.median-1e-9 || *got.Median > w.median+1e-9 || got.Met != w.met || got.Failed != w.failed ||
			got.Verdict != w.verdict || strings.Join(got.Shown, ", ") != w.shown {
			t.Errorf("%s: median %v, met %d, failed %d, verdict %s, shown %q; want %+v", got.Name, got.Median, got.Met, got.Failed, got.Verdict, got.Shown, w)
		}
		if len(got.Reports) != len(got.Values) {
			t.Errorf("%s: %d reports for %d values", got.Name, len(got.Reports), len(got.Values))
		}
	}
	if e := rep.Targets[1].Errors; len(e) != 1 || e[0] != "bank fell over" {
		t.Errorf("swap's errors: %q", e)
	}
	// Size: a failed 10M run and a 1M run without CPU are failures, and
	// their reports are not kept: the base reports pair with the reports.
	if e := rep.Targets[3].Errors; len(e) != 2 || e[0] != "disk full" || !strings.Contains(e[1], "nothing to compare") {
		t.Errorf("size's errors: %q", e)
	}
	if b, r := len(rep.Targets[3].BaseReports), len(rep.Targets[3].Reports); b != 2 || r != 2 {
		t.Errorf("size: %d base reports and %d reports, want 2 and 2", b, r)
	}
	if c := rep.Targets[0].MaxOtherCores; c != 0.2 {
		t.Errorf("pay's most disturbed run: %v cores, want 0.2", c)
	}
	if c := rep.Targets[3].Command; !strings.Contains(c, "--prefill-spent 1000000") || !strings.Contains(c, "then loadgen run") {
		t.Errorf("size's command %q does not show both runs", c)
	}

	var text strings.Builder
	rep.writeText(&text)
	if n := strings.Count(text.String(), "slow syncs"); n != 1 {
		t.Errorf("slow syncs shown for %d targets, want the latency target's only:\n%s", n, text.String())
	}
	for _, s := range []string{"pay-cs", "0.520, 0.499, 0.550 (median 0.520; 2 of 3 met it)", "up to 0.20 of a core busy: disturbed", "failed       1 of its runs: bank fell over",
		"verdict      missed", "p99 under 5 ms",
		"slow syncs   the bank's synced commits over 6.4 ms, per run: 0, 3, ? (the slowest ≤ 102.4 ms)", "loadgen run --scenario swap --cipher cs --coins-per-op 4 --concurrency 16 --duration 15s"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, text.String())
		}
	}
}

func TestTargetsAllFailed(t *testing.T) {
	ts := byName(t, "withdraw-cs")
	f := &fakeRuns{answers: map[string][]any{key(ts[0]): {errors.New("no disk")}}}
	rep := measureTargets(context.Background(), ts, 1, time.Second, time.Second, shuffled(1, 1), f.run, nil)
	if got := rep.Targets[0]; got.Verdict != "failed" || got.Failed != 1 || len(got.Values) != 0 || got.Median != nil {
		t.Errorf("got %+v, want a failed target without a median", got)
	}
}

// TestTargetsInterrupted: targets not reached before an interrupt are
// reported as not run, not as failed.
func TestTargetsInterrupted(t *testing.T) {
	ts := byName(t, "withdraw-cs", "swap-cs")
	ctx, cancel := context.WithCancel(context.Background())
	run := func(context.Context, []string) (*report, []byte, error) {
		cancel() // the interrupt arrives during the first run
		return &report{Fraction: 0.6}, []byte("{}"), nil
	}
	rep := measureTargets(ctx, ts, 2, time.Second, time.Second, func(int) []int { return []int{0, 1} }, run, nil)
	if got := rep.Targets[0]; got.Verdict != "met" || len(got.Values) != 1 {
		t.Errorf("the run in flight: %+v, want it kept", got)
	}
	if got := rep.Targets[1]; got.Verdict != "not run" || got.Failed != 0 {
		t.Errorf("the target not reached: %+v, want not run", got)
	}
}

// TestShuffled: each round is a permutation of the targets, the same for
// the same seed, and the rounds do not all share one order.
func TestShuffled(t *testing.T) {
	const n = 10
	a, b := shuffled(42, n), shuffled(42, n)
	orders := map[string]bool{}
	for round := 1; round <= 3; round++ {
		o := a(round)
		if got := slices.Sorted(slices.Values(o)); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Fatalf("round %d: %v is not a permutation of %d targets", round, o, n)
		}
		if !slices.Equal(o, b(round)) {
			t.Errorf("round %d: another order for the same seed", round)
		}
		orders[fmt.Sprint(o)] = true
	}
	if len(orders) == 1 {
		t.Error("three rounds in one order")
	}
}

// TestTargetsDefault: without --only, every target but the long size one,
// in the order; --only keeps the table's order, not the flag's.
func TestTargetsDefault(t *testing.T) {
	all, err := chooseTargets("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range all {
		names = append(names, tg.Name)
	}
	if want := slices.DeleteFunc(targetNames(), func(n string) bool { return n == "size" }); !slices.Equal(names, want) {
		t.Errorf("default targets %v, want %v", names, want)
	}
	two, err := chooseTargets("latency, pay-cs")
	if err != nil || len(two) != 2 || two[0].Name != "pay-cs" || two[1].Name != "latency" {
		t.Errorf("--only latency,pay-cs: %v, %v", two, err)
	}
}

// TestTargetsNeedTheBinary: in-process (this test binary), targets refuses
// to run itself as a child rather than running the tests again.
func TestTargetsNeedTheBinary(t *testing.T) {
	_, stderr, code := loadgen(t, "targets", "--only", "withdraw-cs", "--runs", "1", "--duration", "1s")
	if code == cli.ExitOK || !strings.Contains(stderr, "test binary") {
		t.Errorf("exit %d, stderr %q: want a refusal", code, stderr)
	}
}

func TestTargetsETA(t *testing.T) {
	started := time.Now().Add(-10 * time.Minute)
	if got := eta(started, 3, 9, 4); got != "" {
		t.Errorf("before a whole round: %q, want none", got)
	}
	// 4 runs in 10 minutes, 8 to go: about 20 minutes.
	if got := eta(started, 4, 12, 4); got != ", about 20 min left" {
		t.Errorf("after a round: %q", got)
	}
	if got := eta(started, 8, 12, 4); got != ", about 5 min left" {
		t.Errorf("two thirds done: %q", got)
	}
	if got := eta(time.Now().Add(-time.Minute), 8, 9, 4); got != ", under a minute left" {
		t.Errorf("seconds to go: %q", got)
	}
}
