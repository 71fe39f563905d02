package bankdcmd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
)

// maxKeySetFile bounds a key-set file read by sign and import.
const maxKeySetFile = 1 << 20

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Short: "show, schedule, rotate, encrypt and sign the bank's keys",
		Long: `keys works on a bank's key file, DIR/keys.json, with the bank stopped or
running (a running bank reads its keys only at start: restart it to serve
a change).

The key file may be encrypted at rest under a passphrase read from a file
(--key-passphrase-file; never given on the command line): Argon2id and
ChaCha20-Poly1305 in a self-describing envelope. 'keys encrypt' converts a
file in clear.

The master key signs the key set (denomination keys and their windows, the
online signing key, the HPKE key) and nothing else; wallets pin it, and its
SHA-256 is the bank id. It can be kept offline: 'keys new-master' makes one
on an offline machine (then 'keys generate --master-public' makes the bank's
other keys), or 'keys export-master' moves an existing bank's master key out
of keys.json. The key set is then signed in a ceremony: 'keys export
--unsigned' on the bank, 'keys sign' on the offline machine, 'keys import'
on the bank.

Denomination keys follow a schedule: 'keys extend' makes them ahead of time
(each new key overlapping its predecessor), the key set lists past, current
and future keys, and the bank and wallets switch keys by the clock. 'keys
prune' drops keys past their deposit deadline; 'keys rotate-signing'
replaces the online signing key and keeps the old one listed so that what
it signed stays verifiable. 'keys show' says which key is current for each
value, when the next takes over, and until when keys exist. docs/KEYS.md is
the runbook.`,
		Example: `bankd keys show --data ./bank
bankd keys encrypt --data ./bank --key-passphrase-file /root/bank.pass
bankd keys export --unsigned --data ./bank --out keyset.unsigned
bankd keys sign --master-key /media/usb/master.key --in keyset.unsigned --out keyset.signed
bankd keys import --data ./bank --in keyset.signed
bankd keys extend --data ./bank --until 2027-06-01
bankd keys prune --data ./bank`,
		Sub: []*cli.Command{
			keysShowCommand(), keysGenerateCommand(), keysEncryptCommand(),
			keysExportCommand(), keysSignCommand(), keysImportCommand(),
			keysNewMasterCommand(), keysExportMasterCommand(),
			keysExtendCommand(), keysPruneCommand(), keysRotateSigningCommand(), keysRevokeCommand(), keysStripCommand(),
		},
	}
}

// loadKeys reads the configured bank's key file.
func loadKeys(inv *cli.Invocation, fl *config.Flags) (k *bank.Keys, path string, opts bank.KeyFileOptions, info bank.KeyFileInfo, err error) {
	cfg, err := settings(inv, fl)
	if err != nil {
		return nil, "", opts, info, err
	}
	dir, err := dataDir(cfg)
	if err != nil {
		return nil, "", opts, info, err
	}
	if opts, err = keyOptions(cfg); err != nil {
		return nil, "", opts, info, err
	}
	path = filepath.Join(dir, bank.KeysFile)
	k, info, err = bank.LoadKeysWith(path, opts)
	if err != nil {
		return nil, path, opts, info, keyFileError(err)
	}
	return k, path, opts, info, nil
}

// keySetJSON is the public key set as show and sign print it.
type keySetJSON struct {
	Currency      string `json:"currency"`
	IssuedAt      string `json:"issued_at"`
	BankID        string `json:"bank_id"` // hex SHA-256 of the master public key
	MasterPublic  string `json:"master_public_key"`
	SigningPublic string `json:"signing_public_key"`
	HPKEPublic    string `json:"hpke_public_key"`
	BodySHA256    string `json:"body_sha256"` // of the bytes the master key signs
	// NextRotation is the next time a key of some value takes over, or
	// stops being issued with none to follow.
	NextRotation  string           `json:"next_rotation"`
	NextRotates   string           `json:"next_rotation_what,omitempty"`
	Denominations []denomJSON      `json:"denominations"`
	Values        []valueJSON      `json:"values"` // the schedule per value, at the time shown
	PastSigning   []pastSignerJSON `json:"past_signing_keys,omitempty"`
}

// valueJSON is where one value stands in the key schedule.
type valueJSON struct {
	Value string `json:"value"`
	// The key withdrawn under now, and until when it is issued.
	CurrentID           string `json:"current_id,omitempty"`
	CurrentWithdrawEnd  string `json:"current_withdraw_until,omitempty"`
	CurrentDepositUntil string `json:"current_deposit_until,omitempty"`
	// The next key to take over, and when.
	NextID    string `json:"next_id,omitempty"`
	NextStart string `json:"next_withdraw_from,omitempty"`
	// The end of the unbroken run of withdrawable keys: extend before it.
	WithdrawableUntil string `json:"withdrawable_until,omitempty"`
	Future            int    `json:"future_keys"`
	Withdrawable      int    `json:"withdrawable_keys"`
	DepositOnly       int    `json:"deposit_only_keys"`
	Expired           int    `json:"expired_keys"`
	Revoked           int    `json:"revoked_keys"` // counted in none of the others: a revoked key issues nothing
}

// pastSignerJSON is a retired signing key.
type pastSignerJSON struct {
	Public     string `json:"public_key"`
	ValidFrom  string `json:"valid_from"`
	ValidUntil string `json:"valid_until"`
}

func describeSigner(s ecash.SigningKey) pastSignerJSON {
	return pastSignerJSON{hex.EncodeToString(s.Pub), rfc3339(s.ValidFrom), rfc3339(s.ValidUntil)}
}

func describeDenom(d ecash.Denomination) denomJSON {
	return denomJSON{
		Value: d.Value.String(), Cipher: d.Key.Cipher().String(), ID: d.ID.String(),
		WithdrawStart: rfc3339(d.WithdrawStart), WithdrawEnd: rfc3339(d.WithdrawEnd), DepositEnd: rfc3339(d.DepositEnd),
		Revoked: d.Revoked, Fees: bank.FeesSpec(d.Fees),
	}
}

type denomJSON struct {
	Value         string `json:"value"`
	Cipher        string `json:"cipher"`
	ID            string `json:"id"`
	WithdrawStart string `json:"withdraw_start"`
	WithdrawEnd   string `json:"withdraw_end"`
	DepositEnd    string `json:"deposit_end"`
	Revoked       bool   `json:"revoked,omitempty"`
	Fees          string `json:"fees,omitempty"` // "fees=W:D:S:R", as --denominations takes them
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// describeKeySet describes a key set, and where its schedule stands at now.
func describeKeySet(ks *ecash.KeySet, now time.Time) keySetJSON {
	body := sha256.Sum256(ks.Body())
	out := keySetJSON{
		Currency: ks.Currency, IssuedAt: rfc3339(ks.IssuedAt), BankID: ks.BankID().String(),
		MasterPublic: hex.EncodeToString(ks.MasterPub), SigningPublic: hex.EncodeToString(ks.SigningPub),
		HPKEPublic: hex.EncodeToString(ks.HPKEPub), BodySHA256: hex.EncodeToString(body[:]),
		Denominations: []denomJSON{}, Values: []valueJSON{},
	}
	for _, d := range ks.Denominations {
		out.Denominations = append(out.Denominations, describeDenom(d))
	}
	for _, s := range ks.PastSigning {
		out.PastSigning = append(out.PastSigning, describeSigner(s))
	}
	// The next rotation: the first time a value's key is replaced by the
	// next, or stops being issued with none to follow.
	var next time.Time
	for _, st := range bank.KeySetStatus(ks, now) {
		v := valueJSON{Value: st.Value.String(), Future: st.Future, Withdrawable: st.Withdrawable, DepositOnly: st.DepositOnly, Expired: st.Expired, Revoked: st.Revoked}
		var at time.Time
		var what string
		if st.Current != nil {
			v.CurrentID, v.CurrentWithdrawEnd, v.CurrentDepositUntil = st.Current.ID.String(), rfc3339(st.Current.WithdrawEnd), rfc3339(st.Current.DepositEnd)
			at, what = st.Current.WithdrawEnd, st.Value.String()+" key "+st.Current.ID.String()[:16]+" stops being issued, and no key follows"
		}
		if st.Next != nil {
			v.NextID, v.NextStart = st.Next.ID.String(), rfc3339(st.Next.WithdrawStart)
			at, what = st.Next.WithdrawStart, st.Value.String()+" key "+st.Next.ID.String()[:16]+" takes over"
		}
		if !st.CoveredUntil.IsZero() {
			v.WithdrawableUntil = rfc3339(st.CoveredUntil)
		}
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next, out.NextRotates = at, what
		}
		out.Values = append(out.Values, v)
	}
	if !next.IsZero() {
		out.NextRotation = rfc3339(next)
	}
	return out
}

// denomRows prints denominations as a table.
func denomRows(w io.Writer, ds []denomJSON) {
	t := cli.NewTable(w)
	// A column for the revoked, when there are.
	revoked := slices.ContainsFunc(ds, func(d denomJSON) bool { return d.Revoked })
	row := func(cells ...any) {
		if !revoked {
			cells = cells[:len(cells)-1]
		}
		t.Row(cells...)
	}
	row("VALUE", "CIPHER", "ID", "WITHDRAW FROM", "WITHDRAW UNTIL", "DEPOSIT UNTIL", "REVOKED")
	for _, d := range ds {
		note := "-"
		if d.Revoked {
			note = "revoked: issues nothing, its coins are only recouped"
		}
		row(d.Value, d.Cipher, d.ID[:16], d.WithdrawStart, d.WithdrawEnd, d.DepositEnd, note)
	}
	t.Flush()
}

// signerRows prints retired signing keys as a table.
func signerRows(w io.Writer, ss []pastSignerJSON) {
	t := cli.NewTable(w)
	t.Row("RETIRED SIGNING KEY", "SIGNED FROM", "SIGNED UNTIL")
	for _, s := range ss {
		t.Row(s.Public, s.ValidFrom, s.ValidUntil)
	}
	t.Flush()
}

// valueRows prints the schedule per value.
func valueRows(w io.Writer, vs []valueJSON) {
	t := cli.NewTable(w)
	t.Row("VALUE", "CURRENT KEY", "ISSUED UNTIL", "NEXT KEY", "TAKES OVER", "KEYS REACH", "FUTURE/ISSUING/DEPOSIT-ONLY/EXPIRED/REVOKED")
	for _, v := range vs {
		cur, until, next, from, reach := "none", "-", "none", "-", "-"
		if v.CurrentID != "" {
			cur, until = v.CurrentID[:16], v.CurrentWithdrawEnd
		}
		if v.NextID != "" {
			next, from = v.NextID[:16], v.NextStart
		}
		if v.WithdrawableUntil != "" {
			reach = v.WithdrawableUntil
		}
		t.Row(v.Value, cur, until, next, from, reach, fmt.Sprintf("%d/%d/%d/%d/%d", v.Future, v.Withdrawable, v.DepositOnly, v.Expired, v.Revoked))
	}
	t.Flush()
}

// keySetRows prints a key set for people; pre adds rows at the top, extra
// after the master key, post at the end.
func keySetRows(w io.Writer, ks keySetJSON, pre, extra, post func(t *cli.Table)) {
	t := cli.NewTable(w)
	if pre != nil {
		pre(t)
	}
	t.Row("currency:", ks.Currency)
	t.Row("issued:", ks.IssuedAt)
	t.Row("bank id:", ks.BankID+" (SHA-256 of the master key)")
	t.Row("master key:", ks.MasterPublic)
	if extra != nil {
		extra(t)
	}
	t.Row("signing key:", ks.SigningPublic)
	t.Row("HPKE key:", ks.HPKEPublic)
	t.Row("key set SHA-256:", ks.BodySHA256+" (of the unsigned body)")
	if ks.NextRotation != "" {
		t.Row("next rotation:", ks.NextRotation+" ("+ks.NextRotates+")")
	}
	if post != nil {
		post(t)
	}
	t.Flush()
	fmt.Fprintln(w)
	denomRows(w, ks.Denominations)
	if len(ks.Values) > 0 {
		fmt.Fprintln(w)
		valueRows(w, ks.Values)
	}
	if len(ks.PastSigning) > 0 {
		fmt.Fprintln(w)
		signerRows(w, ks.PastSigning)
	}
}

func keysShowCommand() *cli.Command {
	var fl config.Flags
	return &cli.Command{
		Name:  "show",
		Short: "show the key set, its fingerprints and the key file's protection",
		Long: `show prints the bank's key set: the bank id (hex SHA-256 of the master
public key: the master key's fingerprint), the master, online signing and
HPKE public keys, each denomination with its value, cipher, id and windows,
and the date of the next rotation (when the first denomination stops being
issued). It also says whether keys.json is encrypted, whether the master key
is held in it or kept offline (and then whether the key set is signed), and
the fingerprint of the TLS certificate if there is one. It prints no
private key.`,
		Example: `bankd keys show --data ./bank
bankd keys show --data ./bank --key-passphrase-file ./bank.pass --json`,
		Flags: fl.RegisterKeyFile,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			k, path, _, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			now := time.Now()
			out := struct {
				KeysFile          string       `json:"keys_file"`
				Encrypted         bool         `json:"encrypted"`
				KDF               string       `json:"kdf,omitempty"`
				Master            string       `json:"master"` // "held" or "offline"
				Signed            bool         `json:"signed"`
				TLSFingerprint    string       `json:"tls_fingerprint,omitempty"`
				SigningSince      string       `json:"signing_since"`
				Schedule          scheduleJSON `json:"schedule"`
				WithdrawableUntil string       `json:"withdrawable_until"` // extend before it
				keySetJSON
			}{KeysFile: path, Encrypted: info.Encrypted, KDF: info.KDF, Master: "held", Signed: k.Signed(), keySetJSON: describeKeySet(k.KeySet(), now),
				SigningSince: rfc3339(k.SigningSince), Schedule: describeSchedule(k.ScheduleOf()), WithdrawableUntil: whenOrNone(k.WithdrawableUntil(now))}
			if k.Master == nil {
				out.Master = "offline"
			}
			if k.Signed() {
				if err := k.CheckKeySet(); err != nil {
					return fmt.Errorf("%s: the key set does not verify: %w", path, err)
				}
			}
			certFile := filepath.Join(filepath.Dir(path), transport.CertFile)
			if fp, err := certFingerprint(certFile); err == nil {
				out.TLSFingerprint = fp
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return inv.Print(out, func(w io.Writer) {
				keySetRows(w, out.keySetJSON, func(t *cli.Table) {
					t.Row("key file:", path+" ("+encryptedText(info)+")")
				}, func(t *cli.Table) {
					switch {
					case k.Master != nil:
						t.Row("", "(held in the key file)")
					case k.Signed():
						t.Row("", "(kept offline; the key set carries its signature)")
					default:
						t.Row("", "(kept offline; the key set is NOT signed yet: the bank cannot serve it)")
					}
				}, func(t *cli.Table) {
					t.Row("signing since:", out.SigningSince)
					t.Row("schedule:", scheduleText(k.ScheduleOf()))
					t.Row("keys reach:", out.WithdrawableUntil+" (a key of every value is withdrawable until then: extend before)")
					if out.TLSFingerprint != "" {
						t.Row("TLS certificate:", certFile)
						t.Row("TLS fingerprint:", out.TLSFingerprint+" (SHA-256)")
					}
				})
			})
		},
	}
}

// certFingerprint is the SHA-256 fingerprint of the PEM certificate in file.
func certFingerprint(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: no PEM certificate", file)
	}
	return transport.Fingerprint(block.Bytes), nil
}

func keysGenerateCommand() *cli.Command {
	var fl config.Flags
	return &cli.Command{
		Name:  "generate",
		Short: "generate a new bank's keys without serving",
		Long: `generate makes a new bank's keys in DIR/keys.json, as the first 'bankd serve'
would, and prints the key set. It refuses if the file exists or DIR holds a
ledger. With a passphrase the file is encrypted from the start.

With --master-public (or master_public_key in the config file) the bank gets
no master key of its own: the key set names that public key, made with
'bankd keys new-master' on an offline machine, and the bank cannot serve
until the key set is signed with it ('keys export --unsigned', 'keys sign',
'keys import').

` + precedence,
		Example: `bankd keys generate --data ./bank --key-passphrase-file ./bank.pass
bankd keys generate --config bankd.json --master-public 3b6a27bc...`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fl.RegisterKeyGen(fs)
			fl.RegisterMasterPublic(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			cfg, err := settings(inv, &fl)
			if err != nil {
				return err
			}
			dir, err := dataDir(cfg)
			if err != nil {
				return err
			}
			opts, err := keyOptions(cfg)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			inv.Notef("%s", keyGenNote(cfg))
			k, err := bank.CreateKeys(dir, cfg.KeyConfig(), time.Now(), opts)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, bank.KeysFile)
			info, err := bank.InspectKeyFile(path)
			if err != nil {
				return err
			}
			if opts.Passphrase == nil {
				inv.Notef("warning: %s is not encrypted; encrypt it with 'bankd keys encrypt'", path)
			}
			if !k.Signed() {
				inv.Notef("the key set must be signed by the offline master key before the bank can serve:\n  bankd keys export --unsigned --data %s --out keyset.unsigned\n  bankd keys sign --master-key MASTER.key --in keyset.unsigned --out keyset.signed   (offline)\n  bankd keys import --data %s --in keyset.signed", dir, dir)
			}
			ks := describeKeySet(k.KeySet(), time.Now())
			out := struct {
				KeysFile  string `json:"keys_file"`
				Encrypted bool   `json:"encrypted"`
				Signed    bool   `json:"signed"`
				keySetJSON
			}{path, info.Encrypted, k.Signed(), ks}
			return inv.Print(out, func(w io.Writer) {
				fmt.Fprintf(w, "created %s (%s)\n\n", path, encryptedText(info))
				keySetRows(w, ks, nil, nil, nil)
			})
		},
	}
}

func keysEncryptCommand() *cli.Command {
	var (
		fl      config.Flags
		newPass string
	)
	return &cli.Command{
		Name:  "encrypt",
		Short: "encrypt a key file in place, or change its passphrase",
		Long: `encrypt rewrites DIR/keys.json encrypted under the passphrase in the
--key-passphrase-file (Argon2id, then ChaCha20-Poly1305), atomically and with
mode 0600, and reads it back. From then on bankd needs the passphrase file
to start.

For a file that is already encrypted, --key-passphrase-file is the current
passphrase and --new-key-passphrase-file the new one: the file is encrypted
again under the new passphrase, with a fresh salt and nonce.

The old file's bytes may survive on the disk and in backups made before:
replace those backups, and keep the passphrase somewhere other than the
key file's backups.`,
		Example: `bankd keys encrypt --data ./bank --key-passphrase-file /root/bank.pass
bankd keys encrypt --data ./bank --key-passphrase-file /root/bank.pass --new-key-passphrase-file /root/bank.pass.new`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&newPass, "new-key-passphrase-file", "", "change the passphrase of an encrypted key file to the one in `FILE`")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			cfg, err := settings(inv, &fl)
			if err != nil {
				return err
			}
			dir, err := dataDir(cfg)
			if err != nil {
				return err
			}
			if cfg.KeyPassphraseFile == "" {
				return cli.Usagef("--key-passphrase-file FILE is required (or $%s, or key_passphrase_file in the --config file)", config.EnvKeyPassphraseFile)
			}
			opts, err := keyOptions(cfg)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, bank.KeysFile)
			info, err := bank.InspectKeyFile(path)
			if err != nil {
				return err
			}
			var k *bank.Keys
			to := opts
			switch {
			case info.Encrypted && newPass == "":
				return fmt.Errorf("%s is already encrypted (%s); to change its passphrase give the new one with --new-key-passphrase-file", path, info.KDF)
			case info.Encrypted:
				pass, err := config.ReadPassphrase(newPass)
				if err != nil {
					return fmt.Errorf("new %w", err)
				}
				if k, _, err = bank.LoadKeysWith(path, opts); err != nil {
					return err
				}
				to = bank.KeyFileOptions{Passphrase: pass}
			case newPass != "":
				return cli.Usagef("%s is not encrypted: give the passphrase with --key-passphrase-file only", path)
			default:
				if k, err = bank.LoadKeys(path); err != nil {
					return err
				}
			}
			if err := k.SaveWith(path, to); err != nil {
				return err
			}
			// Read it back before saying it worked.
			if _, info, err = bank.LoadKeysWith(path, to); err != nil {
				return fmt.Errorf("reading the encrypted file back: %w", err)
			}
			verb := "encrypted"
			if newPass != "" {
				verb = "changed the passphrase of"
				inv.Notef("note: copies of the file made before (backups) still open with the old passphrase")
			} else {
				inv.Notef("note: copies of the old, unencrypted file (backups, the disk's free blocks) still hold the keys in clear")
			}
			out := struct {
				KeysFile  string `json:"keys_file"`
				Encrypted bool   `json:"encrypted"`
				KDF       string `json:"kdf"`
			}{path, true, info.KDF}
			return inv.Print(out, func(w io.Writer) { fmt.Fprintf(w, "%s %s (%s)\n", verb, path, info.KDF) })
		},
	}
}

func keysExportCommand() *cli.Command {
	var (
		fl       config.Flags
		out      string
		unsigned bool
	)
	return &cli.Command{
		Name:  "export",
		Short: "write the key set to a file: unsigned, for the master key to sign, or signed",
		Long: `export writes the bank's public key set to --out. With --unsigned it writes the
unsigned body: the exact bytes the master key signs (a canonical binary
encoding, tag "blindbank/v1/keyset"), to carry to the offline machine for
'bankd keys sign'. Without it, it writes the signed key set, as wallets fetch
it. It prints the SHA-256 of the body: compare it with what 'keys sign'
prints before signing. The file holds no secret.`,
		Example: `bankd keys export --unsigned --data ./bank --out keyset.unsigned
bankd keys export --data ./bank --out keyset.signed`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&out, "out", "", "write the key set to `FILE` (required)")
			fs.BoolVar(&unsigned, "unsigned", false, "write the unsigned body, for 'bankd keys sign'")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if out == "" {
				return cli.Usagef("--out FILE is required")
			}
			k, path, _, _, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			var b []byte
			what := "unsigned key set"
			if unsigned {
				b = k.KeySetBody()
			} else {
				if err := k.CheckKeySet(); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				b, what = k.KeySet().Encode(), "signed key set"
			}
			if err := bank.WriteFileAtomic(out, b, 0o644); err != nil {
				return err
			}
			sum := sha256.Sum256(k.KeySetBody())
			res := struct {
				File       string `json:"file"`
				Unsigned   bool   `json:"unsigned"`
				Bytes      int    `json:"bytes"`
				BankID     string `json:"bank_id"`
				BodySHA256 string `json:"body_sha256"`
			}{out, unsigned, len(b), k.BankID().String(), hex.EncodeToString(sum[:])}
			return inv.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "wrote the %s of bank %s to %s (%d bytes)\n", what, res.BankID, out, len(b))
				fmt.Fprintf(w, "key set SHA-256: %s\n", res.BodySHA256)
			})
		},
	}
}

// masterOptions reads the master key file's passphrase, if given.
func masterOptions(file string) (bank.KeyFileOptions, error) {
	if file == "" {
		return bank.KeyFileOptions{}, nil
	}
	pass, err := config.ReadPassphrase(file)
	if err != nil {
		return bank.KeyFileOptions{}, fmt.Errorf("master %w", err)
	}
	return bank.KeyFileOptions{Passphrase: pass}, nil
}

func masterKeyError(err error) error {
	if errors.Is(err, bank.ErrKeysEncrypted) {
		return fmt.Errorf("%w: give --master-passphrase-file FILE", err)
	}
	return err
}

func keysSignCommand() *cli.Command {
	var masterKey, masterPass, in, out string
	return &cli.Command{
		Name:  "sign",
		Short: "sign an unsigned key set with the master key (on the offline machine)",
		Long: `sign is the offline half of the key ceremony. It reads an unsigned key set
written by 'bankd keys export --unsigned', checks that it is a well-formed
key set naming this master key, signs it, writes the signed key set to --out
and prints what it signed: check the bank id, the key set SHA-256 (against
what 'keys export' printed) and the denominations and their windows before
carrying the signed file back for 'bankd keys import'.

The master key file holds only the master key's seed (made by 'bankd keys
new-master' or 'bankd keys export-master'); encrypted, it needs
--master-passphrase-file. sign needs no data directory and no network.`,
		Example: `bankd keys sign --master-key /media/usb/master.key --master-passphrase-file /root/master.pass \
    --in keyset.unsigned --out keyset.signed`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&masterKey, "master-key", "", "the master key `FILE` (required)")
			fs.StringVar(&masterPass, "master-passphrase-file", "", "`FILE` holding the passphrase of an encrypted master key file")
			fs.StringVar(&in, "in", "", "the unsigned key set `FILE` (required)")
			fs.StringVar(&out, "out", "", "write the signed key set to `FILE` (required)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			for _, f := range []struct{ name, v string }{{"master-key", masterKey}, {"in", in}, {"out", out}} {
				if f.v == "" {
					return cli.Usagef("--%s FILE is required", f.name)
				}
			}
			opts, err := masterOptions(masterPass)
			if err != nil {
				return err
			}
			master, _, err := bank.LoadMasterKey(masterKey, opts)
			if err != nil {
				return masterKeyError(err)
			}
			body, err := cli.ReadFileLimited(in, maxKeySetFile)
			if err != nil {
				return err
			}
			ks, signed, err := bank.SignKeySetBody(master, body)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			if err := bank.WriteFileAtomic(out, signed, 0o644); err != nil {
				return err
			}
			desc := describeKeySet(ks, time.Now())
			return inv.Print(desc, func(w io.Writer) {
				fmt.Fprintf(w, "signed the key set in %s; wrote %s\n\n", in, out)
				keySetRows(w, desc, nil, nil, nil)
			})
		},
	}
}

func keysImportCommand() *cli.Command {
	var (
		fl config.Flags
		in string
	)
	return &cli.Command{
		Name:  "import",
		Short: "install a key set signed offline by the master key",
		Long: `import reads a signed key set written by 'bankd keys sign', checks the
signature against the bank's master public key and checks that what was
signed is exactly the bank's current key set, then stores the signature in
DIR/keys.json (atomically, encrypted again if it was). A bank whose master
key is offline serves the key set with that signature from its next start.
A bank that holds its master key only checks the file: it signs for itself.`,
		Example: `bankd keys import --data ./bank --in keyset.signed`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&in, "in", "", "the signed key set `FILE` (required)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if in == "" {
				return cli.Usagef("--in FILE is required")
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			b, err := cli.ReadFileLimited(in, maxKeySetFile)
			if err != nil {
				return err
			}
			before := slices.Clone(k.MasterSig)
			ks, err := k.InstallSignature(b)
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			installed := k.Master == nil && !slices.Equal(before, k.MasterSig)
			if installed {
				if !info.Encrypted {
					opts.Passphrase = nil // keep the file as it was
				}
				if err := k.SaveWith(path, opts); err != nil {
					return err
				}
				if err := k.CheckKeySet(); err != nil {
					return err
				}
			}
			res := struct {
				KeysFile  string `json:"keys_file"`
				BankID    string `json:"bank_id"`
				Installed bool   `json:"installed"`
			}{path, ks.BankID().String(), installed}
			return inv.Print(res, func(w io.Writer) {
				switch {
				case installed:
					fmt.Fprintf(w, "installed the signed key set of bank %s in %s; restart bankd to serve it\n", res.BankID, path)
				case k.Master == nil:
					fmt.Fprintf(w, "the signature verifies and is already installed in %s\n", path)
				default:
					fmt.Fprintf(w, "the signature verifies; %s holds the master key and signs for itself: nothing to install\n", path)
				}
			})
		},
	}
}

func keysNewMasterCommand() *cli.Command {
	var out, masterPass string
	return &cli.Command{
		Name:  "new-master",
		Short: "make a master key file (on the offline machine)",
		Long: `new-master makes a fresh Ed25519 master key and writes its seed to --out
(mode 0600; encrypted under the passphrase in --master-passphrase-file if
given; an existing file is never replaced). It prints the public key, for
'bankd keys generate --master-public', and the bank id it gives. Run it on
the machine that will keep the master key, and back the file up: without it
the key set can never be changed.`,
		Example: `bankd keys new-master --out /media/usb/master.key --master-passphrase-file /root/master.pass`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "write the master key to `FILE` (required; must not exist)")
			fs.StringVar(&masterPass, "master-passphrase-file", "", "`FILE` holding a passphrase to encrypt the master key file under")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if out == "" {
				return cli.Usagef("--out FILE is required")
			}
			opts, err := masterOptions(masterPass)
			if err != nil {
				return err
			}
			pub, master, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := bank.SaveMasterKey(out, master, opts); err != nil {
				return err
			}
			if opts.Passphrase == nil {
				inv.Notef("warning: %s is not encrypted: keep it offline", out)
			}
			res := struct {
				File         string `json:"file"`
				MasterPublic string `json:"master_public_key"`
				BankID       string `json:"bank_id"`
			}{out, hex.EncodeToString(pub), ecash.HashOf(pub).String()}
			return inv.Print(res, func(w io.Writer) { fmt.Fprintln(w, res.MasterPublic) })
		},
	}
}

func keysExportMasterCommand() *cli.Command {
	var (
		fl              config.Flags
		out, masterPass string
	)
	return &cli.Command{
		Name:  "export-master",
		Short: "move the master key out of keys.json into a file, to keep offline",
		Long: `export-master takes an existing bank's master key offline: it writes the
master key's seed to --out (mode 0600; encrypted under the passphrase in
--master-passphrase-file if given; an existing file is never replaced),
reads it back, and only then rewrites DIR/keys.json without it, keeping the
master public key and its signature over the current key set, so the bank
goes on serving the same key set. Move the file to the offline machine and
delete it here; a changed key set must from then on be signed with
'bankd keys sign'.

Backups of keys.json made before still hold the master key: replace them.`,
		Example: `bankd keys export-master --data ./bank --out /media/usb/master.key --master-passphrase-file /root/master.pass`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&out, "out", "", "write the master key to `FILE` (required; must not exist)")
			fs.StringVar(&masterPass, "master-passphrase-file", "", "`FILE` holding a passphrase to encrypt the master key file under")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if out == "" {
				return cli.Usagef("--out FILE is required")
			}
			mopts, err := masterOptions(masterPass)
			if err != nil {
				return err
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			if err := k.CheckKeySet(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			master := k.Master
			if _, err := k.TakeMasterOffline(); err != nil {
				return err
			}
			if err := bank.SaveMasterKey(out, master, mopts); err != nil {
				return err
			}
			back, _, err := bank.LoadMasterKey(out, mopts)
			if err != nil || !back.Equal(master) {
				return fmt.Errorf("reading %s back: %v; keys.json is unchanged", out, err)
			}
			if !info.Encrypted {
				opts.Passphrase = nil // keep the file as it was
			}
			if err := k.SaveWith(path, opts); err != nil {
				return err
			}
			if mopts.Passphrase == nil {
				inv.Notef("warning: %s is not encrypted: keep it offline", out)
			}
			res := struct {
				File         string `json:"file"`
				KeysFile     string `json:"keys_file"`
				MasterPublic string `json:"master_public_key"`
				BankID       string `json:"bank_id"`
			}{out, path, hex.EncodeToString(k.MasterPub), k.BankID().String()}
			return inv.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "moved the master key of bank %s to %s; %s keeps its public key and signature\n", res.BankID, out, path)
			})
		},
	}
}
