package bankdcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
)

// bankd runs a bankd command in-process.
func bankd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code = cli.Run(context.Background(), Command(), env, args)
	return code, out.String(), errb.String()
}

func mustBankd(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := bankd(t, args...)
	if code != 0 {
		t.Fatalf("bankd %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

type shown struct {
	Signed            bool             `json:"signed"`
	SigningPublic     string           `json:"signing_public_key"`
	NextRotation      string           `json:"next_rotation"`
	WithdrawableUntil string           `json:"withdrawable_until"`
	Schedule          scheduleJSON     `json:"schedule"`
	Denominations     []denomJSON      `json:"denominations"`
	Values            []valueJSON      `json:"values"`
	PastSigning       []pastSignerJSON `json:"past_signing_keys"`
}

func show(t *testing.T, dir string) shown {
	t.Helper()
	out, _ := mustBankd(t, "keys", "show", "--data", dir, "--json")
	var s shown
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return s
}

func TestKeysExtendShowRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	mustBankd(t, "keys", "generate", "--data", dir, "--denominations", "EUR:1.00/cs,EUR:2.00/cs")
	s := show(t, dir)
	if len(s.Denominations) != 2 || s.Schedule.WithdrawPeriod != "8760h0m0s" || s.Schedule.Overlap != "730h0m0s" || s.Schedule.DepositLifetime != "17520h0m0s" {
		t.Fatalf("a new bank: %+v", s)
	}
	// The default overlap, a twelfth of a year, in the days the flags
	// take (--overlap 30d10h), not as 730h0m0s beside 365d.
	if text, _ := mustBankd(t, "keys", "show", "--data", dir); !strings.Contains(text, "withdraw period 365d, overlap 30d10h, deposit lifetime 730d") {
		t.Errorf("keys show of a new bank:\n%s", text)
	}
	if s.Values[0].NextID != "" || s.Values[0].CurrentID == "" || s.NextRotation != s.Values[0].CurrentWithdrawEnd {
		t.Fatalf("a new bank's schedule: %+v", s.Values)
	}

	// Usage errors.
	for _, args := range [][]string{
		{"keys", "extend", "--data", dir},
		{"keys", "extend", "--data", dir, "--until", "2001-01-01"},
		{"keys", "extend", "--data", dir, "--until", "soon"},
		{"keys", "extend", "--data", dir, "--until", "2099-01-01", "--ahead", "10d"},
	} {
		if code, _, _ := bankd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	// A zero --ahead is refused naming --ahead, not the --until not given.
	if code, _, errs := bankd(t, "keys", "extend", "--data", dir, "--ahead", "0d"); code != 2 || !strings.Contains(errs, "--ahead") || strings.Contains(errs, "--until") {
		t.Errorf("--ahead 0d: exit %d: %s", code, errs)
	}
	if code, _, errs := bankd(t, "keys", "extend", "--data", dir, "--ahead", "30d", "--overlap", "400d"); code != 1 || !strings.Contains(errs, "overlap") {
		t.Errorf("an overlap longer than the period: exit %d: %s", code, errs)
	}

	// Extend two years ahead, with a shorter period from now on.
	out, errs := mustBankd(t, "keys", "extend", "--data", dir, "--ahead", "730d", "--withdraw-period", "180d", "--overlap", "10d")
	// Keys from day 355, 525 and 695 per value: the last ends at day 875.
	if !strings.Contains(out, "made 6 denomination keys") || !strings.Contains(errs, "restart bankd") {
		t.Fatalf("extend:\n%s%s", out, errs)
	}
	s = show(t, dir)
	if len(s.Denominations) != 8 || s.Schedule.WithdrawPeriod != "4320h0m0s" {
		t.Fatalf("after extend: %d keys, schedule %+v", len(s.Denominations), s.Schedule)
	}
	for _, v := range s.Values {
		if v.NextID == "" || v.Future != 3 || v.Withdrawable != 1 {
			t.Fatalf("value after extend: %+v", v)
		}
		// The next key takes over 10 days before the first one stops.
		end, _ := time.Parse(time.RFC3339, v.CurrentWithdrawEnd)
		if v.NextStart != rfc3339(end.Add(-10*24*time.Hour)) {
			t.Errorf("%s: next key from %s, current until %s", v.Value, v.NextStart, v.CurrentWithdrawEnd)
		}
	}
	if s.NextRotation != s.Values[0].NextStart {
		t.Errorf("next rotation %s, want %s", s.NextRotation, s.Values[0].NextStart)
	}
	text, _ := mustBankd(t, "keys", "show", "--data", dir)
	for _, want := range []string{"schedule:  ", "withdraw period 180d, overlap 10d, deposit lifetime 730d", "keys reach:", "takes over)",
		"CURRENT KEY", "EUR:1.00  ", "3/1/0/0/0"} {
		if !strings.Contains(text, want) {
			t.Errorf("keys show lacks %q:\n%s", want, text)
		}
	}
	// Again: nothing to do.
	if out, _ := mustBankd(t, "keys", "extend", "--data", dir, "--ahead", "100d"); !strings.Contains(out, "no keys made") {
		t.Errorf("extending within the schedule: %s", out)
	}
	// A period alone, for which the schedule's overlap (10d) is too long:
	// a twelfth of it instead.
	mustBankd(t, "keys", "extend", "--data", dir, "--ahead", "900d", "--withdraw-period", "12d")
	if s = show(t, dir); s.Schedule.WithdrawPeriod != "288h0m0s" || s.Schedule.Overlap != "24h0m0s" {
		t.Fatalf("after a period alone: schedule %+v, want 12d with a 1d overlap", s.Schedule)
	}

	// Rotate the signing key (made a minute ago, as far as the file says).
	path := filepath.Join(dir, bank.KeysFile)
	k, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	k.SigningSince = k.SigningSince.Add(-time.Minute)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	oldSigning := s.SigningPublic
	out, _ = mustBankd(t, "keys", "rotate-signing", "--data", dir, "--grace", "2h")
	if !strings.Contains(out, "retired "+oldSigning) {
		t.Fatalf("rotate-signing: %s", out)
	}
	s = show(t, dir)
	if s.SigningPublic == oldSigning || len(s.PastSigning) != 1 || s.PastSigning[0].Public != oldSigning {
		t.Fatalf("after rotation: signing %s, retired %+v", s.SigningPublic, s.PastSigning)
	}
	if text, _ := mustBankd(t, "keys", "show", "--data", dir); !strings.Contains(text, "RETIRED SIGNING KEY") {
		t.Errorf("keys show does not list the retired key:\n%s", text)
	}
	// The bank starts from it.
	if _, _, err := bank.OpenKeys(dir, bank.KeyConfig{}, time.Now(), bank.KeyFileOptions{}); err != nil {
		t.Fatal(err)
	}
	// An exported signed key set carries the retired key.
	mustBankd(t, "keys", "export", "--data", dir, "--out", filepath.Join(dir, "ks.signed"))
	b, _ := os.ReadFile(filepath.Join(dir, "ks.signed"))
	ks, err := ecash.DecodeKeySet(b, nil)
	if err != nil || len(ks.PastSigning) != 1 || hex.EncodeToString(ks.PastSigning[0].Pub) != oldSigning {
		t.Fatalf("exported key set: %v", err)
	}
}

// signingMadeAgo dates the signing key of the bank in dir d ago, so that
// it may be rotated now.
func signingMadeAgo(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	path := filepath.Join(dir, bank.KeysFile)
	k, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	k.SigningSince = k.SigningSince.Add(-d)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
}

// TestKeysRotateSigningNoGrace: --grace 0 is meaningful, not a mistake to
// refuse: with bankd stopped, the retired key's window closes at the
// rotation, leaving a thief of a leaked key nothing to forge after it.
func TestKeysRotateSigningNoGrace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	mustBankd(t, "keys", "generate", "--data", dir, "--denominations", "EUR:1.00/cs")
	signingMadeAgo(t, dir, time.Minute)
	mustBankd(t, "keys", "rotate-signing", "--data", dir, "--grace", "0")
	s := show(t, dir)
	if len(s.PastSigning) != 1 {
		t.Fatalf("after rotation: retired %+v", s.PastSigning)
	}
	until, err := time.Parse(time.RFC3339, s.PastSigning[0].ValidUntil)
	if err != nil || until.After(time.Now()) {
		t.Fatalf("the retired key valid until %q (%v), want no later than now", s.PastSigning[0].ValidUntil, err)
	}
}

// TestKeysRotateSigningGraceBound: --grace above 30d is refused as a
// usage error, before the key file changes; 30d itself is taken.
func TestKeysRotateSigningGraceBound(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	mustBankd(t, "keys", "generate", "--data", dir, "--denominations", "EUR:1.00/cs")
	before := show(t, dir)
	if code, _, errs := bankd(t, "keys", "rotate-signing", "--data", dir, "--grace", "31d"); code != 2 || !strings.Contains(errs, "--grace 31d: at most 30d") {
		t.Fatalf("--grace 31d: exit %d: %s", code, errs)
	}
	if after := show(t, dir); len(after.PastSigning) != 0 || after.SigningPublic != before.SigningPublic {
		t.Fatalf("a refused rotation changed the keys: %+v", after)
	}
	signingMadeAgo(t, dir, time.Minute)
	mustBankd(t, "keys", "rotate-signing", "--data", dir, "--grace", "30d")
	if s := show(t, dir); len(s.PastSigning) != 1 {
		t.Fatalf("--grace 30d: retired %+v", s.PastSigning)
	}
}

// TestKeysShowRevoked: a revoked key issues nothing (the bank refuses to
// withdraw under it), so keys show marks it revoked and counts it apart,
// never as issuing or future: neither in the text nor in --json.
func TestKeysShowRevoked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	mustBankd(t, "keys", "generate", "--data", dir, "--denominations", "EUR:1.00/cs,EUR:2.00/cs")
	mustBankd(t, "keys", "extend", "--data", dir, "--ahead", "500d")
	s := show(t, dir)
	var cur1, next2 string // EUR:1.00's current key, EUR:2.00's next
	for _, v := range s.Values {
		switch v.Value {
		case "EUR:1.00":
			cur1 = v.CurrentID
		case "EUR:2.00":
			next2 = v.NextID
		}
	}
	if cur1 == "" || next2 == "" {
		t.Fatalf("schedule: %+v", s.Values)
	}
	mustBankd(t, "keys", "revoke", "--data", dir, "--denomination", cur1)
	mustBankd(t, "keys", "revoke", "--data", dir, "--denomination", next2)
	s = show(t, dir)
	for _, d := range s.Denominations {
		if want := d.ID == cur1 || d.ID == next2; d.Revoked != want {
			t.Errorf("denomination %s %s: revoked %v, want %v", d.Value, d.ID[:16], d.Revoked, want)
		}
	}
	for _, v := range s.Values {
		var want valueJSON
		switch v.Value {
		case "EUR:1.00": // the current key revoked: none issuing, the next to come
			want = valueJSON{Value: v.Value, NextID: v.NextID, NextStart: v.NextStart, Future: 1, Revoked: 1}
		case "EUR:2.00": // the next key revoked: none to take over
			want = valueJSON{Value: v.Value, CurrentID: v.CurrentID, CurrentWithdrawEnd: v.CurrentWithdrawEnd,
				CurrentDepositUntil: v.CurrentDepositUntil, WithdrawableUntil: v.WithdrawableUntil, Withdrawable: 1, Revoked: 1}
			if v.NextID != "" {
				t.Errorf("EUR:2.00: next key %s, which is revoked", v.NextID[:16])
			}
		}
		if v != want {
			t.Errorf("value %s: %+v, want %+v", v.Value, v, want)
		}
	}
	text, _ := mustBankd(t, "keys", "show", "--data", dir)
	rows := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, cur1[:16]) || strings.Contains(line, next2[:16]) {
			if !strings.Contains(line, "revoked") {
				t.Errorf("a revoked key's row does not say so: %q", line)
			}
			rows++
		}
	}
	if rows != 2 {
		t.Errorf("%d rows of revoked keys:\n%s", rows, text)
	}
	for _, want := range []string{"FUTURE/ISSUING/DEPOSIT-ONLY/EXPIRED/REVOKED", "1/0/0/0/1", "0/1/0/0/1"} {
		if !strings.Contains(text, want) {
			t.Errorf("keys show lacks %q:\n%s", want, text)
		}
	}
}

func TestKeysPrune(t *testing.T) {
	dir := t.TempDir()
	// A bank made four years ago with yearly keys, extended to now: its
	// first keys' coins are past their deposit deadline.
	now := time.Now()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{{Currency: "EUR", Value: 100}}, Cipher: ecash.CipherCS,
		Until: now.Add(24 * time.Hour)}, now.AddDate(-4, 0, 0), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Save(filepath.Join(dir, bank.KeysFile)); err != nil {
		t.Fatal(err)
	}
	before := show(t, dir)
	var expired int
	for _, v := range before.Values {
		expired += v.Expired
	}
	if expired == 0 {
		t.Fatalf("no expired keys to prune: %+v", before.Values)
	}
	out, _ := mustBankd(t, "keys", "prune", "--data", dir)
	if !strings.Contains(out, "archived the signed key set") || !strings.Contains(out, "pruned ") {
		t.Fatalf("prune: %s", out)
	}
	after := show(t, dir)
	if len(after.Denominations) != len(before.Denominations)-expired || after.Values[0].Expired != 0 {
		t.Fatalf("after prune: %d keys, was %d with %d expired", len(after.Denominations), len(before.Denominations), expired)
	}
	archived, _ := filepath.Glob(filepath.Join(dir, "keysets", "keyset-*.signed"))
	if len(archived) != 1 {
		t.Fatalf("archive: %v", archived)
	}
	b, _ := os.ReadFile(archived[0])
	if ks, err := ecash.DecodeKeySet(b, nil); err != nil || len(ks.Denominations) != len(before.Denominations) {
		t.Fatalf("archived key set: %v", err)
	}
	if out, _ := mustBankd(t, "keys", "prune", "--data", dir); !strings.Contains(out, "nothing to prune") {
		t.Errorf("prune again: %s", out)
	}
}

// With the master key offline, extend says the changed key set must be
// signed before bankd restarts, and bankd refuses to start until it is.
func TestKeysExtendOfflineMaster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	mpub, master, _ := ed25519.GenerateKey(rand.Reader)
	mustBankd(t, "keys", "generate", "--data", dir, "--denominations", "EUR:1.00/cs", "--master-public", hex.EncodeToString(mpub))
	k, err := bank.LoadKeys(filepath.Join(dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	_, signed, err := bank.SignKeySetBody(master, k.KeySetBody())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ks.signed"), signed, 0o600); err != nil {
		t.Fatal(err)
	}
	mustBankd(t, "keys", "import", "--data", dir, "--in", filepath.Join(dir, "ks.signed"))
	if !show(t, dir).Signed {
		t.Fatal("not signed after import")
	}
	_, errs := mustBankd(t, "keys", "extend", "--data", dir, "--ahead", "500d")
	if !strings.Contains(errs, "sign the changed key set before bankd restarts") || !strings.Contains(errs, "bankd keys export --unsigned") {
		t.Fatalf("extend with an offline master: %s", errs)
	}
	if show(t, dir).Signed {
		t.Fatal("the old signature still stands")
	}
	if _, _, err := bank.OpenKeys(dir, bank.KeyConfig{}, time.Now(), bank.KeyFileOptions{}); err == nil {
		t.Fatal("a bank would serve the unsigned key set")
	}
}

// TestDurationFlagsDays: bankd's duration flags take one set of forms (the
// cli package's), days included, and a bad value names them.
func TestDurationFlagsDays(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	// admin backup --timeout: parsed, then --to is missing.
	if code, _, errs := bankd(t, "admin", "--data", dir, "backup", "--timeout", "1d"); code != 2 || !strings.Contains(errs, "--to DIR is required") {
		t.Errorf("backup --timeout 1d: exit %d: %s", code, errs)
	}
	for _, args := range [][]string{
		{"admin", "--data", dir, "backup", "--timeout", "a day"},
		{"keys", "extend", "--data", dir, "--ahead", "a year"},
		{"keys", "rotate-signing", "--data", dir, "--grace", "1.5d"},
	} {
		if code, _, errs := bankd(t, args...); code != 2 || !strings.Contains(errs, "a Go duration (90m, 720h, 1h30m) or a whole number of days (30d)") {
			t.Errorf("%v: exit %d: %s", args, code, errs)
		}
	}
}

func TestParseWhen(t *testing.T) {
	if got, err := parseWhen("2027-06-01"); err != nil || !got.Equal(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("parseWhen date: %v, %v", got, err)
	}
	if got, err := parseWhen("2027-06-01T12:00:00+02:00"); err != nil || !got.Equal(time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("parseWhen time: %v, %v", got, err)
	}
}
