package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tree is a small command tree that records what ran.
type tree struct {
	global, name string
	n            int
	ran          string
	args         []string
	json         bool
}

func (tr *tree) command() *Command {
	run := func(name string) func(context.Context, *Invocation) error {
		return func(_ context.Context, inv *Invocation) error {
			tr.ran, tr.args, tr.json = name, inv.Args, inv.JSON
			switch {
			case tr.name == "usage":
				return Usagef("bad usage")
			case tr.name == "fail":
				return errors.New("it failed\nbadly")
			case tr.name == "panic":
				panic("boom")
			case tr.name == "rpc":
				return fmt.Errorf("calling: %w", status.Error(codes.Unavailable, "connection refused"))
			}
			return inv.Print(map[string]string{"name": tr.name}, func(w io.Writer) { fmt.Fprintln(w, "name", tr.name) })
		}
	}
	return &Command{
		Name:  "prog",
		Flags: func(fs *flag.FlagSet) { fs.StringVar(&tr.global, "global", "g0", "a global `THING`") },
		Sub: []*Command{
			{
				Name: "leaf", Args: "[ARG...]", NArgs: -1, Short: "a leaf", Example: "prog leaf --name x",
				Flags: func(fs *flag.FlagSet) {
					fs.StringVar(&tr.name, "name", "", "a `NAME`")
					fs.IntVar(&tr.n, "n", 0, "a number")
				},
				Run: run("leaf"),
			},
			{Name: "one", Args: "X", NArgs: 1, Short: "takes one", Run: run("one")},
			{
				Name: "group", Short: "a group",
				Flags: func(fs *flag.FlagSet) { fs.StringVar(&tr.name, "gflag", "", "group flag") },
				Sub:   []*Command{{Name: "inner", Short: "inner leaf", Run: run("inner")}},
			},
		},
	}
}

func run(t *testing.T, args ...string) (tr *tree, code int, stdout, stderr string) {
	t.Helper()
	tr = &tree{}
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code = Run(context.Background(), tr.command(), env, args)
	return tr, code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"leaf", "--name", "ok"}, 0, ""},
		{[]string{"--help"}, 0, ""},
		{[]string{"leaf", "-h"}, 0, ""},
		{[]string{"help", "group", "inner"}, 0, ""},
		{nil, 2, "Usage: prog"},
		{[]string{"nope"}, 2, `prog: unknown command "nope"; one of leaf, one, group (see 'prog --help')`},
		{[]string{"leaf", "--bogus"}, 2, "prog: flag provided but not defined: -bogus (see 'prog leaf --help')"},
		{[]string{"leaf", "--n", "x"}, 2, `invalid value "x" for flag -n`},
		{[]string{"one"}, 2, "prog: missing X (see 'prog one --help')"},
		{[]string{"one", "a", "b"}, 2, `prog: too many arguments: want X, got "a b"`},
		{[]string{"group"}, 2, "prog: missing command; one of inner (see 'prog group --help')"},
		{[]string{"group", "inner", "stray"}, 2, `prog: unexpected argument "stray"`},
		{[]string{"help", "nope"}, 2, `no help for unknown command "nope"`},
		{[]string{"leaf", "--name", "usage"}, 2, "prog: bad usage (see 'prog leaf --help')"},
		{[]string{"leaf", "--name", "fail"}, 1, "prog: it failed; badly\n"},
		{[]string{"leaf", "--name", "panic"}, 1, "prog: internal error: boom"},
		{[]string{"leaf", "--name", "rpc"}, 1, "prog: calling: unreachable: connection refused\n"},
	} {
		_, code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d, stderr containing %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
		if tc.code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 && tc.args != nil {
			t.Errorf("%q: error is not one line: %q", tc.args, stderr)
		}
	}
}

func TestFlagsAnywhere(t *testing.T) {
	// Flags after the subcommand, mixed with positional arguments, inherited
	// flags given at either level, and "--" ending the flags.
	tr, code, stdout, _ := run(t, "leaf", "a", "--name", "x", "b", "--global", "g1", "--json", "--", "--n")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if tr.ran != "leaf" || tr.name != "x" || tr.global != "g1" || !tr.json {
		t.Errorf("got %+v", tr)
	}
	if strings.Join(tr.args, " ") != "a b --n" {
		t.Errorf("args %q", tr.args)
	}
	if !strings.Contains(stdout, `"name": "x"`) {
		t.Errorf("json output %q", stdout)
	}
	tr, _, _, _ = run(t, "--global", "g2", "--json", "group", "--gflag", "v", "inner")
	if tr.ran != "inner" || tr.global != "g2" || tr.name != "v" || !tr.json {
		t.Errorf("got %+v", tr)
	}
	tr, _, _, _ = run(t, "group", "inner", "--gflag", "w", "-global=g3")
	if tr.ran != "inner" || tr.global != "g3" || tr.name != "w" {
		t.Errorf("got %+v", tr)
	}
	_, _, stdout, _ = run(t, "leaf", "--name", "t")
	if stdout != "name t\n" {
		t.Errorf("text output %q", stdout)
	}
}

func TestHelp(t *testing.T) {
	_, _, stdout, _ := run(t, "--help")
	for _, want := range []string{"Usage: prog [flags] COMMAND [flags]", "  leaf ", "  one ", "  group ", "--global THING", "--json", "-h, --help"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("root help lacks %q:\n%s", want, stdout)
		}
	}
	_, _, stdout, _ = run(t, "leaf", "--help")
	for _, want := range []string{"Usage: prog leaf [flags] [ARG...]", "a leaf.", "--name NAME", "--n N", "Global flags:", "--global THING", "(default g0)", "Example:\n  prog leaf --name x"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("leaf help lacks %q:\n%s", want, stdout)
		}
	}
	_, _, stdout, _ = run(t, "group", "inner", "-h")
	if !strings.Contains(stdout, "Flags of 'prog group' (also accepted here):\n  --gflag VALUE") {
		t.Errorf("inner help:\n%s", stdout)
	}
}

func TestParseAmount(t *testing.T) {
	if a, err := ParseAmount("EUR:3.5"); err != nil || a.String() != "EUR:3.50" {
		t.Errorf("EUR:3.5: %v %v", a, err)
	}
	for in, want := range map[string]string{
		"EUR:1.234":                `bad amount "EUR:1.234": want CURRENCY:UNITS.CENTS`,
		"3.50":                     `bad amount "3.50"`,
		"eur:1":                    `bad amount "eur:1"`,
		"EUR:9999999999999999":     "too large",
		"EUR:99999999999999999999": `amount "EUR:99999999999999999999" is too large`,
		"EUR:-1":                   `bad amount "EUR:-1"`,
		"EUR:1.00 ":                `bad amount`,
		"EUR:":                     `bad amount`,
	} {
		_, err := ParseAmount(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	if _, err := ParsePositiveAmount("EUR:0.00"); err == nil || !strings.Contains(err.Error(), "more than zero") {
		t.Errorf("zero: %v", err)
	}
	if _, err := ParseID("--account", "0"); err == nil {
		t.Error("id 0 accepted")
	}
	if id, err := ParseID("--account", "1001"); err != nil || id != 1001 {
		t.Errorf("1001: %d %v", id, err)
	}
}

func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "ca.pem")
	os.WriteFile(pem, []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), 0o600)
	pin := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		flags TLSFlags
		addr  string
		usage bool
		err   string
	}{
		{TLSFlags{}, "127.0.0.1:1", true, "say how to trust the bank: --bank-ca FILE"},
		{TLSFlags{CA: pem, Plaintext: true}, "127.0.0.1:1", true, "give only one of"},
		{TLSFlags{Pin: "xyz"}, "127.0.0.1:1", false, "not a SHA-256 fingerprint"},
		{TLSFlags{Pin: strings.ToUpper(pin[:2]) + ":" + pin[2:]}, "10.0.0.1:1", false, ""},
		{TLSFlags{CA: filepath.Join(dir, "none")}, "127.0.0.1:1", false, "no such file"},
		{TLSFlags{CA: pem}, "bank.example:1", false, ""},
		{TLSFlags{Plaintext: true}, "bank.example:1", false, "loopback"},
		{TLSFlags{Plaintext: true}, "localhost:1", false, ""},
	} {
		f := tc.flags
		f.Prefix, f.What = "bank-", "bank"
		cfg, err := f.Config(tc.addr)
		var ue *UsageError
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.flags, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: %v, want %q", tc.flags, err, tc.err)
		case err != nil && errors.As(err, &ue) != tc.usage:
			t.Errorf("%+v: usage error %v, want %v", tc.flags, !tc.usage, tc.usage)
		case tc.flags.Pin != "" && err == nil && cfg.Pin != pin:
			t.Errorf("pin normalised to %q", cfg.Pin)
		}
	}
}

func TestMessage(t *testing.T) {
	err := fmt.Errorf("wallet: retry: %v", status.Error(codes.DeadlineExceeded, "slow"))
	if got := Message(err); got != "wallet: retry: timed out: slow" {
		t.Errorf("got %q", got)
	}
	if got := Message(status.Error(codes.NotFound, "merchant: no such order")); got != "merchant: no such order" {
		t.Errorf("got %q", got)
	}
	// A peer's words are shown, not acted on: escape sequences, other
	// controls, bidi overrides and stray bytes come out as Go escapes;
	// quotes and ordinary text as they are.
	hostile := status.Error(codes.FailedPrecondition, "merchant: \x1b[2K\rpayment cancelled\a; nothing \u202e\"paid\" \x1b]52;c;ZXZpbA==\a é\xff")
	want := `merchant: \x1b[2K payment cancelled\a; nothing \u202e"paid" \x1b]52;c;ZXZpbA==\a é\xff`
	if got := Message(hostile); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	inv := &Invocation{Env: &Env{Stderr: &b, StderrTerminal: true}}
	p := inv.NewProgress("withdrawing")
	p.Set(32, 64)
	p.Set(64, 64)
	p.Finish()
	if !strings.Contains(b.String(), "withdrawing [###############...............] 32/64") || !strings.HasSuffix(b.String(), "\r\033[K") {
		t.Errorf("bar %q", b.String())
	}
	b.Reset()
	inv.StderrTerminal = false
	p = inv.NewProgress("x")
	p.Set(1, 2)
	p.Finish()
	if b.Len() != 0 {
		t.Errorf("drew on a non-terminal: %q", b.String())
	}
}

func TestAddresses(t *testing.T) {
	dir := t.TempDir()
	type extra struct {
		ServeInfo
		Keys string `json:"keys"`
	}
	if err := WriteAddresses(dir, extra{ServeInfo{Addr: "127.0.0.1:1", AdminAddr: "127.0.0.1:2", PID: 7}, "created"}); err != nil {
		t.Fatal(err)
	}
	info, err := ReadAddresses(dir)
	if err != nil || info.AdminAddr != "127.0.0.1:2" || info.PID != 7 {
		t.Fatalf("%+v %v", info, err)
	}
	RemoveAddresses(dir)
	if _, err := ReadAddresses(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after remove: %v", err)
	}
}

// TestShown: a peer's text reaches the terminal as it is only if every
// character is printable; otherwise quoted, control characters, escape
// sequences, bidi overrides and bad UTF-8 escaped.
func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"2 x coffee":             "2 x coffee",
		"Café crème 1,50 €":      "Café crème 1,50 €",
		"a\rb\x1b[2K":            `"a\rb\x1b[2K"`,
		"EUR:\u202e00.005":       `"EUR:\u202e00.005"`,
		"tab\there":              `"tab\there"`,
		"bad \xff":               `"bad \xff"`,
		"c1 \u009b":              `"c1 \u009b"`,
		"zero\u200bwidth sp":     `"zero\u200bwidth sp"`,
		"family 👨\u200d👩\u200d👧": "family 👨\u200d👩\u200d👧",
		"1\u00a0000 EUR":         "1\u00a0000 EUR",
		"line\u2028sep":          `"line\u2028sep"`,
	} {
		if got := Shown(in); got != want {
			t.Errorf("Shown(%q) = %s, want %s", in, got, want)
		}
	}
}

// A table cell a peer wrote (a check's reference, a memo, a reason) is
// shown, not acted on: no control byte reaches the terminal, and a tab or
// newline in it does not break the table.
func TestTableEscapesCells(t *testing.T) {
	var b bytes.Buffer
	tb := NewTable(&b)
	tb.Row("product:", "inv\x1b]52;c;ZXZpbA==\a\x1b[2K\rpaid\tin\nfull")
	tb.Row("memo:", "Café crème 👨\u200d👩\u200d👧")
	tb.Flush()
	want := "product:  inv\\x1b]52;c;ZXZpbA==\\a\\x1b[2K\\rpaid\\tin\\nfull\nmemo:     Café crème 👨\u200d👩\u200d👧\n"
	if b.String() != want {
		t.Errorf("got  %q\nwant %q", b.String(), want)
	}
}

// TestPrintJSONEscapesHidden: --json output carries a peer's text (a memo
// in a decoded transcript, a reason) as escapes where a terminal would act
// on it, and decodes to the same text.
func TestPrintJSONEscapesHidden(t *testing.T) {
	text := "pay\u009b2Jnow \u202eEUR:1.00 \x7fdel \U000e0041tag line\u2028sep Café 👨\u200d👩\u200d👧 <&>"
	var b bytes.Buffer
	inv := &Invocation{Env: &Env{Stdout: &b}, JSON: true}
	if err := inv.Print(map[string]string{"memo": text}, nil); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, r := range []rune{0x9b, 0x202e, 0x7f, 0xe0041, 0x2028} {
		if strings.ContainsRune(out, r) {
			t.Errorf("--json output carries %U as it is: %q", r, out)
		}
	}
	for _, kept := range []string{"Café", "👨\u200d👩\u200d👧"} {
		if !strings.Contains(out, kept) {
			t.Errorf("--json output lost %q: %q", kept, out)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, out)
	}
	if back["memo"] != text {
		t.Errorf("decodes to %q, want %q", back["memo"], text)
	}
}

// TestPrintJSONRawNotUTF8: a json.RawMessage (a decoded message embedded
// as it is) keeps bytes that are not UTF-8, which json.Marshal would have
// replaced: a lone 0x9b, a C1 escape on some terminals, is written as
// U+FFFD instead.
func TestPrintJSONRawNotUTF8(t *testing.T) {
	var b bytes.Buffer
	inv := &Invocation{Env: &Env{Stdout: &b}, JSON: true}
	if err := inv.Print(map[string]json.RawMessage{"decoded": json.RawMessage("{\"memo\":\"a\x9b2Jb\"}")}, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(b.Bytes(), 0x9b) >= 0 {
		t.Fatalf("--json output carries the byte 0x9b: %q", b.String())
	}
	var back map[string]map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["decoded"]["memo"] != "a\ufffd2Jb" {
		t.Fatalf("decodes to %q (%v), want a\ufffd2Jb", back["decoded"]["memo"], err)
	}
}

// A flag with no `PLACEHOLDER` in its usage shows a placeholder for its
// kind, never Go's type name.
func TestFlagPlaceholders(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Float64("rate", 1, "a rate")
	fs.Int("count", 0, "a count")
	fs.Duration("wait", 0, "a wait")
	fs.String("name", "", "a name")
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	var b strings.Builder
	writeFlags(&b, flags)
	for _, want := range []string{"--rate N ", "--count N ", "--wait DURATION ", "--name VALUE "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("flags lack %q:\n%s", want, b.String())
		}
	}
	for _, typ := range []string{"float", "int", "duration", "string"} {
		if strings.Contains(b.String(), " "+typ+" ") {
			t.Errorf("flags show the type %q:\n%s", typ, b.String())
		}
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 coins", 1: "1 coin", 2: "2 coins"} {
		if got := Plural(n, "coin"); got != want {
			t.Errorf("Plural(%d) = %q, want %q", n, got, want)
		}
	}
}
