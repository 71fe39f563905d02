package bankdcmd

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
	"github.com/blindbank/blindbank/ecash"
)

// The key lifecycle commands: extend, prune, rotate-signing. Each changes
// the key set, so each rewrites DIR/keys.json (encrypted again if it was)
// and says what the operator must do next: restart bankd, and with an
// offline master key first sign the changed key set. docs/KEYS.md is the
// runbook.

// parseWhen parses a date (2027-06-01, midnight UTC) or an RFC 3339 time.
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2027-06-01) nor an RFC 3339 time (2027-06-01T12:00:00Z)", s)
	}
	return t, nil
}

func scheduleText(s bank.Schedule) string {
	return fmt.Sprintf("withdraw period %s, overlap %s, deposit lifetime %s", cli.FormatDuration(s.WithdrawPeriod), cli.FormatDuration(s.Overlap), cli.FormatDuration(s.DepositLifetime))
}

// scheduleJSON is a schedule as the commands print it.
type scheduleJSON struct {
	WithdrawPeriod  string `json:"withdraw_period"`
	Overlap         string `json:"overlap"`
	DepositLifetime string `json:"deposit_lifetime"`
}

func describeSchedule(s bank.Schedule) scheduleJSON {
	return scheduleJSON{s.WithdrawPeriod.String(), s.Overlap.String(), s.DepositLifetime.String()}
}

// saveChanged writes changed keys back as they were (encrypted or not),
// reads them back, and tells the operator what comes next.
func saveChanged(inv *cli.Invocation, k *bank.Keys, path string, opts bank.KeyFileOptions, info bank.KeyFileInfo) error {
	if !info.Encrypted {
		opts.Passphrase = nil // keep the file as it was
	}
	if err := k.SaveWith(path, opts); err != nil {
		return err
	}
	if _, _, err := bank.LoadKeysWith(path, opts); err != nil {
		return fmt.Errorf("reading %s back: %w", path, err)
	}
	dir := filepath.Dir(path)
	if !k.Signed() {
		inv.Notef("the master key is offline: sign the changed key set before bankd restarts (until then it refuses to start):\n  bankd keys export --unsigned --data %s --out keyset.unsigned\n  bankd keys sign --master-key MASTER.key --in keyset.unsigned --out keyset.signed   (offline)\n  bankd keys import --data %s --in keyset.signed\nthen restart bankd", dir, dir)
		return nil
	}
	if err := k.CheckKeySet(); err != nil {
		return fmt.Errorf("%s: the changed key set does not verify: %w", path, err)
	}
	inv.Notef("restart bankd to serve the changed key set (a running bank reads its keys only at start)")
	return nil
}

func keysExtendCommand() *cli.Command {
	var (
		fl                                config.Flags
		until                             string
		ahead, period, overlap, depositLT time.Duration
	)
	return &cli.Command{
		Name:  "extend",
		Short: "generate denomination keys ahead of time, following the key schedule",
		Long: `extend makes the next denomination keys of every value ahead of time, so
that a key of each value can be withdrawn at every instant until --until (a
date or an RFC 3339 time) or for --ahead from now. Each new key starts the
schedule's overlap before its predecessor stops issuing coins, issues coins
for the withdraw period, and its coins are accepted for the deposit lifetime
after that. The key set lists past, current and future keys with their
windows, so the bank and the wallets switch to a new key by the clock alone:
no restart is needed when a key takes over, only after extend.

The schedule is kept in keys.json (a bank made before schedules infers it
from its newest keys, with an overlap of a twelfth of the withdraw period);
--withdraw-period, --overlap and --deposit-lifetime change it for the keys
made now and later (the overlap must be under half the period; given a
period alone, for which the schedule's overlap is too long, the overlap
becomes a twelfth of it). Values keep their cipher and RSA key size.

The key set changes: restart bankd to serve it, and with an offline master
key sign it first ('keys export --unsigned', 'keys sign', 'keys import').
Extend well before the schedule runs out ('keys show' says when), so that
wallets learn the next keys in time.`,
		Example: `bankd keys extend --data ./bank --until 2027-06-01
bankd keys extend --data ./bank --ahead 400d --withdraw-period 90d --overlap 7d --deposit-lifetime 365d`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&until, "until", "", "make keys until `DATE` (2027-06-01, or an RFC 3339 time)")
			cli.DurationVar(fs, &ahead, "ahead", 0, "make keys for `DURATION` from now, above zero (400d, or a Go duration such as 9600h)")
			cli.DurationVar(fs, &period, "withdraw-period", 0, "each new key issues coins for `DURATION` (default: the schedule's)")
			cli.DurationVar(fs, &overlap, "overlap", 0, "a new key starts `DURATION` before its predecessor stops issuing (default: the schedule's)")
			cli.DurationVar(fs, &depositLT, "deposit-lifetime", 0, "coins are accepted for `DURATION` after their key stops issuing (default: the schedule's)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			now := time.Now()
			var end time.Time
			switch {
			case until != "" && inv.IsSet("ahead"):
				return cli.Usagef("give --until or --ahead, not both")
			case until != "":
				t, err := parseWhen(until)
				if err != nil {
					return cli.Usagef("--until: %v", err)
				}
				end = t
			case inv.IsSet("ahead"):
				if ahead <= 0 {
					return cli.Usagef("--ahead %s: want a duration above zero", cli.FormatDuration(ahead))
				}
				end = now.Add(ahead)
			default:
				return cli.Usagef("--until DATE or --ahead DURATION is required")
			}
			if !end.After(now) {
				return cli.Usagef("--until %s is not in the future", rfc3339(end))
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			s := k.ScheduleOf()
			for _, o := range []struct {
				name string
				v    time.Duration
				to   *time.Duration
			}{{"withdraw-period", period, &s.WithdrawPeriod}, {"overlap", overlap, &s.Overlap}, {"deposit-lifetime", depositLT, &s.DepositLifetime}} {
				if inv.IsSet(o.name) {
					*o.to = o.v
				}
			}
			if inv.IsSet("withdraw-period") && !inv.IsSet("overlap") && 2*s.Overlap >= s.WithdrawPeriod {
				// The schedule's overlap is too long for the new period:
				// the default's share of it instead.
				s.Overlap = s.WithdrawPeriod / 12
			}
			if err := s.Check(); err != nil {
				return err
			}
			scheduleChanged := s != k.Schedule
			inv.Notef("generating denomination keys until %s (%s)… RSA keys take a moment each", rfc3339(end), scheduleText(s))
			added, err := k.Extend(s, end, now, rand.Reader)
			if err != nil {
				return err
			}
			if len(added) > 0 || scheduleChanged {
				if err := saveChanged(inv, k, path, opts, info); err != nil {
					return err
				}
			}
			res := struct {
				KeysFile          string       `json:"keys_file"`
				Added             []denomJSON  `json:"added"`
				Schedule          scheduleJSON `json:"schedule"`
				WithdrawableUntil string       `json:"withdrawable_until"`
			}{KeysFile: path, Added: []denomJSON{}, Schedule: describeSchedule(s), WithdrawableUntil: whenOrNone(k.WithdrawableUntil(now))}
			for _, d := range added {
				res.Added = append(res.Added, describeDenom(d.Denomination))
			}
			return inv.Print(res, func(w io.Writer) {
				if len(added) == 0 {
					fmt.Fprintf(w, "the schedule already reaches %s: no keys made\n", rfc3339(end))
				} else {
					fmt.Fprintf(w, "made %d denomination keys in %s\n\n", len(added), path)
					denomRows(w, res.Added)
				}
				fmt.Fprintf(w, "\nschedule: %s\nkeys reach: %s (a key of every value is withdrawable until then)\n", scheduleText(s), res.WithdrawableUntil)
			})
		},
	}
}

func whenOrNone(t time.Time) string {
	if t.IsZero() {
		return "now: some value has no withdrawable key"
	}
	return rfc3339(t)
}

// archiveKeySet keeps the signed key set about to be replaced in
// DIR/keysets/, named by its issue time, for auditors checking old
// transcripts against keys no longer published.
func archiveKeySet(dir string, ks *ecash.KeySet) (string, error) {
	adir := filepath.Join(dir, "keysets")
	if err := os.MkdirAll(adir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Join(adir, "keyset-"+ks.IssuedAt.UTC().Format("20060102T150405Z")+".signed")
	if _, err := os.Lstat(name); err == nil {
		return name, nil // archived already
	}
	return name, bank.WriteFileAtomic(name, ks.Encode(), 0o644)
}

func keysPruneCommand() *cli.Command {
	var (
		fl            config.Flags
		signingBefore string
	)
	return &cli.Command{
		Name:  "prune",
		Short: "drop denomination keys past their deposit deadline from the key set",
		Long: `prune drops from DIR/keys.json and the published key set every denomination
key whose deposit deadline has passed: the bank refuses its coins already,
and wallets need not carry it. With --signing-before it also drops the
retired online signing keys whose window ended before that date: receipts
and proofs they signed stop verifying against the key set, so keep them
for as long as anyone may need to check such receipts.

Before changing anything it archives the current signed key set in
DIR/keysets/ (named by its issue time): auditors check old transcripts
against it. Then restart bankd (with an offline master key, sign the
changed key set first).`,
		Example: `bankd keys prune --data ./bank
bankd keys prune --data ./bank --signing-before 2024-01-01`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&signingBefore, "signing-before", "", "also drop retired signing keys whose window ended before `DATE`")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			var before time.Time
			if signingBefore != "" {
				t, err := parseWhen(signingBefore)
				if err != nil {
					return cli.Usagef("--signing-before: %v", err)
				}
				before = t
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			var archived string
			old := k.KeySet()
			if k.Signed() {
				if archived, err = archiveKeySet(filepath.Dir(path), old); err != nil {
					return fmt.Errorf("archiving the key set: %w", err)
				}
			}
			gone, goneSigning := k.Prune(time.Now(), before)
			if len(gone)+len(goneSigning) > 0 {
				if err := saveChanged(inv, k, path, opts, info); err != nil {
					return err
				}
			}
			res := struct {
				KeysFile       string           `json:"keys_file"`
				Archived       string           `json:"archived,omitempty"`
				Pruned         []denomJSON      `json:"pruned"`
				PrunedSigning  []pastSignerJSON `json:"pruned_signing_keys"`
				Denominations  int              `json:"denominations"`
				RetiredSigning int              `json:"retired_signing_keys"`
			}{KeysFile: path, Archived: archived, Pruned: []denomJSON{}, PrunedSigning: []pastSignerJSON{}, Denominations: len(k.Denoms), RetiredSigning: len(k.PastSigning)}
			for _, d := range gone {
				res.Pruned = append(res.Pruned, describeDenom(d.Denomination))
			}
			for _, s := range goneSigning {
				res.PrunedSigning = append(res.PrunedSigning, describeSigner(s))
			}
			return inv.Print(res, func(w io.Writer) {
				if archived != "" {
					fmt.Fprintf(w, "archived the signed key set issued %s in %s\n", rfc3339(old.IssuedAt), archived)
				}
				if len(gone)+len(goneSigning) == 0 {
					fmt.Fprintf(w, "nothing to prune: %d denomination keys, %d retired signing keys\n", res.Denominations, res.RetiredSigning)
					return
				}
				fmt.Fprintf(w, "pruned %d denomination keys and %d retired signing keys from %s; %d denomination keys remain\n", len(gone), len(goneSigning), path, res.Denominations)
				if len(gone) > 0 {
					fmt.Fprintln(w)
					denomRows(w, res.Pruned)
				}
				if len(goneSigning) > 0 {
					fmt.Fprintln(w)
					signerRows(w, res.PrunedSigning)
				}
			})
		},
	}
}

func keysRotateSigningCommand() *cli.Command {
	var (
		fl    config.Flags
		grace time.Duration
	)
	return &cli.Command{
		Name:  "rotate-signing",
		Short: "replace the online signing key; the old one stays listed for old receipts",
		Long: `rotate-signing makes a fresh online signing key (the key that signs deposit
receipts, double-spend proofs, check receipts and statements) and lists the
old one in the key set as retired, with the window in which it signed: from
when it became the signing key until now plus --grace (default 24h). What
it signed in that window, by the time the signed object states, goes on
verifying; what it signs later does not.

A running bank signs with the old key until it restarts: restart it within
the grace (with an offline master key, sign the changed key set first).
Rotate at once, with a short grace, if the old key may have leaked: the
window bounds what a thief can forge to back-dated objects. A grace of 0
closes the window now, for a bank stopped before the rotation (a running
one's signatures until its restart would not verify). The grace is at most
30d: it covers a restart (and an offline signing of the key set), and a
longer one would keep a retired key good for new signatures long after.`,
		Example: `bankd keys rotate-signing --data ./bank
bankd keys rotate-signing --data ./bank --grace 1h`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			cli.DurationVar(fs, &grace, "grace", 24*time.Hour, "the old key stays valid for `DURATION` (0 to 30d; 0 with bankd stopped) after now, until bankd restarts with the new one")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			g := grace
			if g > bank.MaxSigningGrace { // refused by RotateSigning too; here as a usage error
				return cli.Usagef("--grace %s: at most %s (the window only needs to cover a restart)", cli.FormatDuration(g), cli.FormatDuration(bank.MaxSigningGrace))
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			retired, err := k.RotateSigning(time.Now(), g, rand.Reader)
			if err != nil {
				return err
			}
			if err := saveChanged(inv, k, path, opts, info); err != nil {
				return err
			}
			ks := k.KeySet()
			res := struct {
				KeysFile   string         `json:"keys_file"`
				SigningPub string         `json:"signing_public_key"`
				Retired    pastSignerJSON `json:"retired"`
			}{path, fmt.Sprintf("%x", ks.SigningPub), describeSigner(retired)}
			return inv.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "new signing key: %s\n", res.SigningPub)
				fmt.Fprintf(w, "retired %s: valid for what it signed from %s until %s\n", res.Retired.Public, res.Retired.ValidFrom, res.Retired.ValidUntil)
			})
		},
	}
}
