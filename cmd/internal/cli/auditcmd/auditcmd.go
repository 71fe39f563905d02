// Package auditcmd is the audit command: it verifies what the bank and its
// users recorded against the bank's signed keys. cmd/audit is its main.
//
// "audit transcript" checks a wallet's or merchant's transcript (the JSON
// lines ecash.Transcript writes; docs/TRANSCRIPTS.md specifies them and
// every check): each message decodes canonically, each signature verifies,
// and the messages bind to one another (receipts to requests, coins to the
// wallet, amounts, and NetBill's atomicity properties as far as a transcript
// shows them), offline. "audit keys" fetches and saves the key set to check
// against. "audit log" fetches the bank's audit log online, verifies it
// against the bank's signed checkpoints and replays it (money conserved, each
// coin spent once; docs/AUDIT.md).
package auditcmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// Main runs audit with the process's arguments.
func Main() int {
	cli.QuietStdlibLog()
	return cli.Main(Command())
}

// Command builds the audit command tree.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Short: "verify blindbank transcripts and the bank's audit log against the bank's keys",
		Long: `audit checks what a blindbank bank and its users recorded, against the bank's
signed key set and nothing else: no trust in the bank's word, the wallet's or
the merchant's beyond their signatures.

"audit transcript" verifies a wallet's or merchant's transcript offline (the
JSON lines that 'wallet pay|withdraw|swap|return|refunds|buy|write-check
--transcript FILE' appends to, or the wallet and merchant libraries write).
"audit keys" saves the bank's key set to check against. "audit log" fetches
the bank's audit log, verifies it and replays the ledger's history.`,
		Example: `audit keys --bank bank.example:7443 --ca bank.crt --out keyset.signed
audit transcript --keys keyset.signed pay.jsonl
audit log --bank bank.example:7443 --ca bank.crt --state bank.audit`,
		Sub: []*cli.Command{transcriptCommand(), keysCommand(), logCommand()},
	}
}

func transcriptCommand() *cli.Command {
	var (
		kf       keyFlags
		complete bool
		decoded  bool
	)
	return &cli.Command{
		Name:  "transcript",
		Args:  "FILE",
		NArgs: 1,
		Short: "verify a wallet's or merchant's transcript offline",
		Long: `transcript verifies a transcript: one JSON record per line, each a protocol
message with its canonical bytes, as a wallet or merchant recorded it
(docs/TRANSCRIPTS.md). FILE "-" reads standard input.

Every message must decode canonically and every signature verify against the
bank's key set: the bank's on coins (denomination keys), receipts and
double-spend proofs; the merchant's on quotes and endorsements; the
customer's on payment orders; each coin's on its swap permission; account and
merchant signatures on withdraw and payment requests where recorded. And the
messages must bind: a receipt to the payment request and sealed payment it
answers (payment hash, account, total), its coins to coins the wallet was
issued, adding up to the total and spent once; a swap's inputs to its outputs
in value; a coin to a withdraw or swap request that asked for it; a NetBill
receipt to the EPO the customer signed (hash, fields, and K against the key
commitment), one outcome per EPOID, in commit order. An endorsement's memo is
held to the rule it was signed under: one signed before 2026-11-27 may hold
control characters, which the line's summary notes.

What no one can verify offline is listed, not failed: the contents of a
sealed payment (only the bank's HPKE key opens it), an EPO's private part, the
goods key inside an endorsement. With --complete the transcript is taken to
hold the party's whole history, so a coin, request or EPO it refers to but
does not contain is a failure.

The report gives each line's result; any failure names its line and step,
and the command exits 1.`,
		Example: `audit transcript --keys keyset.signed wallet.jsonl
audit transcript --bank 127.0.0.1:7443 --ca bank/tls.crt --json merchant.jsonl
audit transcript --keys keyset.signed --complete --json --decoded wallet.jsonl`,
		Flags: func(fs *flag.FlagSet) {
			kf.register(fs)
			fs.BoolVar(&complete, "complete", false, "the transcript holds the party's whole history: anything it refers to must be in it")
			fs.BoolVar(&decoded, "decoded", false, "with --json, add each message's decoded fields to the report")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			keys, err := kf.load(ctx)
			if err != nil {
				return err
			}
			name := inv.Args[0]
			var in io.Reader = inv.Stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			rep, err := Verify(in, name, keys, Options{Complete: complete, Decoded: decoded && inv.JSON})
			if err != nil {
				return err
			}
			if err := inv.Print(rep, func(w io.Writer) { writeReport(w, rep) }); err != nil {
				return err
			}
			if f := rep.FirstFailure(); f != nil {
				return fmt.Errorf("%s: %d of %d lines failed; first: line %d %s: %s", name, rep.Failures, len(rep.Lines), f.Line, stepName(f), f.Error)
			}
			if len(rep.Lines) == 0 {
				return fmt.Errorf("%s: the transcript is empty", name)
			}
			return nil
		},
	}
}

func stepName(l *LineResult) string {
	if l.Step == "" {
		return "(no step)"
	}
	return l.Step
}

// writeReport prints a report for people.
func writeReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "transcript %s\n", rep.File)
	fmt.Fprintf(w, "bank %s (%s), master key %s, %d key set(s)\n", rep.BankID, rep.Currency, rep.MasterKey, rep.KeySets)
	if rep.Complete {
		fmt.Fprintf(w, "taken as complete: everything the messages refer to must be in it\n")
	}
	fmt.Fprintln(w)
	t := cli.NewTable(w)
	t.Row("LINE", "PARTY", "STEP", "RESULT", "")
	for _, l := range rep.Lines {
		result, text := "ok", l.Summary
		if !l.OK {
			result, text = "FAIL", l.Error
		}
		t.Row(l.Line, orDash(l.Party), orDash(l.Step), result, text)
	}
	t.Flush()
	if len(rep.Unverified) > 0 {
		fmt.Fprintf(w, "\nnot verifiable from this transcript:\n")
		for _, u := range rep.Unverified {
			fmt.Fprintf(w, "  - %s (%s %s)\n", u.What, plural(len(u.Lines), "line", "lines"), lineList(u.Lines))
		}
	}
	ok := len(rep.Lines) - rep.Failures
	fmt.Fprintf(w, "\n%d %s: %d ok, %d failed\n", len(rep.Lines), plural(len(rep.Lines), "line", "lines"), ok, rep.Failures)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// lineList renders line numbers compactly: 1-3, 7, 9.
func lineList(ls []int) string {
	var parts []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		} else {
			parts = append(parts, fmt.Sprint(ls[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func keysCommand() *cli.Command {
	var (
		kf  keyFlags
		out string
	)
	return &cli.Command{
		Name:  "keys",
		Short: "fetch the bank's signed key set, check it and save it",
		Long: `keys fetches the bank's signed key set (--bank ADDR, as wallets do) or reads
one (--keys FILE), checks the master key's signature (and that it is the
pinned --master key, if given), prints what it holds and, with --out, saves
its exact bytes: the file 'audit transcript --keys' takes. 'bankd keys
export' writes the same file on the bank's side.`,
		Example: `audit keys --bank bank.example:7443 --ca bank.crt --out keyset.signed
audit keys --keys keyset.signed --json`,
		Flags: func(fs *flag.FlagSet) {
			kf.register(fs)
			fs.StringVar(&out, "out", "", "save the signed key set to `FILE`")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			keys, err := kf.load(ctx)
			if err != nil {
				return err
			}
			if out != "" {
				if len(keys.raw) != 1 {
					return cli.Usagef("--out saves one key set; give one of --bank and --keys")
				}
				if err := cli.WriteOutFile(out, keys.raw[0], 0o644, true, ""); err != nil {
					return fmt.Errorf("saving --out: %w", err)
				}
			}
			type denom struct {
				ID            string `json:"id"`
				Value         string `json:"value"`
				Cipher        string `json:"cipher"`
				WithdrawStart string `json:"withdraw_start"`
				WithdrawEnd   string `json:"withdraw_end"`
				DepositEnd    string `json:"deposit_end"`
			}
			type keySet struct {
				BankID        string  `json:"bank_id"`
				Currency      string  `json:"currency"`
				MasterKey     string  `json:"master_key"`
				SigningKey    string  `json:"signing_key"`
				IssuedAt      string  `json:"issued_at"`
				SHA256        string  `json:"sha256"`
				Denominations []denom `json:"denominations"`
			}
			res := struct {
				File    string   `json:"file,omitempty"`
				KeySets []keySet `json:"key_sets"`
			}{File: out}
			const ts = "2006-01-02T15:04:05Z"
			for i, ks := range keys.Sets() {
				sum := sha256.Sum256(keys.raw[i])
				k := keySet{
					BankID: ks.BankID().String(), Currency: ks.Currency, MasterKey: hex.EncodeToString(ks.MasterPub),
					SigningKey: hex.EncodeToString(ks.SigningPub), IssuedAt: ks.IssuedAt.UTC().Format(ts), SHA256: hex.EncodeToString(sum[:]),
					Denominations: []denom{},
				}
				for _, d := range ks.Denominations {
					k.Denominations = append(k.Denominations, denom{
						ID: d.ID.String(), Value: d.Value.String(), Cipher: d.Key.Cipher().String(),
						WithdrawStart: d.WithdrawStart.UTC().Format(ts), WithdrawEnd: d.WithdrawEnd.UTC().Format(ts), DepositEnd: d.DepositEnd.UTC().Format(ts),
					})
				}
				res.KeySets = append(res.KeySets, k)
			}
			return inv.Print(res, func(w io.Writer) {
				for _, k := range res.KeySets {
					fmt.Fprintf(w, "bank %s (%s)\n", k.BankID, k.Currency)
					fmt.Fprintf(w, "master key:  %s\nsigning key: %s\nissued at:   %s\nSHA-256:     %s\n", k.MasterKey, k.SigningKey, k.IssuedAt, k.SHA256)
					t := cli.NewTable(w)
					t.Row("VALUE", "CIPHER", "WITHDRAW FROM", "UNTIL", "DEPOSIT UNTIL", "ID")
					for _, d := range k.Denominations {
						t.Row(d.Value, d.Cipher, d.WithdrawStart, d.WithdrawEnd, d.DepositEnd, d.ID[:16]+"…")
					}
					t.Flush()
				}
				if out != "" {
					fmt.Fprintf(w, "saved to %s\n", out)
				}
			})
		},
	}
}
