package walletcmd

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func exportSeedCommand(g *globals) *cli.Command {
	var out string
	return &cli.Command{
		Name:  "export-seed",
		Short: "write the wallet's secret seed to a file, for restore",
		Long: `export-seed writes the wallet's 32-byte seed, in hex, to a new file (mode
0600). The seed alone rebuilds the wallet ("wallet restore"): every coin and
the account key derive from it. Whoever holds it holds your money: keep it
offline.`,
		Example: `wallet export-seed --out /media/usb/alice.seed`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "write the seed to `FILE` (must not exist)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if out == "" {
				return cli.Usagef("--out FILE is required")
			}
			w, _, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			if err := cli.WriteOutFile(out, []byte(hex.EncodeToString(w.Seed())+"\n"), 0o600, false, ""); err != nil {
				return err
			}
			return inv.Print(struct {
				SeedFile string `json:"seed_file"`
			}{out}, func(w io.Writer) { fmt.Fprintf(w, "seed written to %s\n", out) })
		},
	}
}

// readSeed reads a seed file: 64 hex digits, surrounding space ignored.
func readSeed(path string) ([]byte, error) {
	b, err := cli.ReadFileLimited(path, 1024) // 64 hex digits and some space
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != 32 {
		return nil, fmt.Errorf("%s: not a wallet seed (64 hex digits)", path)
	}
	return seed, nil
}

func restoreCommand(g *globals) *cli.Command {
	var (
		bankAddr, seedFile, fromWallet string
		account                        uint64
	)
	tlsf := &cli.TLSFlags{What: "bank"}
	return &cli.Command{
		Name:  "restore",
		Short: "rebuild a wallet from its seed alone",
		Long: `restore rebuilds the wallet in --wallet DIR from a seed file (see "wallet
export-seed"), or from the seed of a copy of a wallet directory
(--from-wallet COPY, only read): it re-derives the wallet's planchets, asks
the bank for the blind signatures it issued for them (in batches, with a
progress bar), unblinds and checks every coin, then asks which coins are
spent and keeps the others. The bank is given as for "wallet init". The
account id cannot be derived from the seed: give --account, or run "wallet
set-account" later. With --from-wallet, the copy's account is set unless
--account is given (a different one is noted) or this wallet has one.

Restoring into a wallet made from the same seed resumes or re-checks it:
coins already held are kept, nothing is lost or counted twice.

Put a backup of a wallet directory back this way, never by copying it back
and using it: the copy's planchet counter is older than the wallet's last
coins, and a planchet it made again under another denomination than before
would be a coin the bank holds spent (the bank refuses those it can see, the
same planchet under the same denomination, and the wallet then catches up
by itself; it cannot see the others).

Privacy: a restore shows the bank which coins are yours, linking your past
payments to your account. It is for a lost device, not routine use.`,
		Example: `wallet --wallet ./alice restore --seed-file alice.seed --bank 127.0.0.1:7443 --ca ./bank/tls.crt --account 1000
wallet --wallet ./alice restore --from-wallet /media/usb/alice-backup --bank 127.0.0.1:7443 --ca ./bank/tls.crt --account 1000`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&seedFile, "seed-file", "", "the wallet seed `FILE` (this or --from-wallet)")
			fs.StringVar(&fromWallet, "from-wallet", "", "read the seed from a copy of a wallet directory, `COPY` (only read)")
			fs.StringVar(&bankAddr, "bank", "", "the bank's public `ADDR` (required)")
			fs.Uint64Var(&account, "account", 0, "the bank account `ID` to set (optional)")
			tlsf.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if err := checkDir(g); err != nil {
				return err
			}
			if (seedFile == "") == (fromWallet == "") {
				return cli.Usagef("give --seed-file FILE or --from-wallet COPY")
			}
			if err := cli.CheckAddr("bank", bankAddr); err != nil {
				return err
			}
			var seed []byte
			var copyAccount uint64 // the account the copy was set to
			var err error
			if seedFile != "" {
				seed, err = readSeed(seedFile)
			} else if seed, copyAccount, err = wallet.ReadCopy(fromWallet); errors.Is(err, wallet.ErrNotFound) {
				err = fmt.Errorf("%s: no wallet there", fromWallet)
			} else if err != nil {
				err = cli.LockHint(err, "another wallet command is using "+fromWallet)
			}
			if err != nil {
				return err
			}
			tcfg, err := tlsf.Config(bankAddr)
			if err != nil {
				return err
			}
			cfg := Config{Bank: bankAddr, Pin: tcfg.Pin, Plaintext: tcfg.Plaintext}
			if err := os.MkdirAll(g.dir, 0o700); err != nil {
				return err
			}
			if cfg.CAFile, err = copyCA(g.dir, tcfg.CAFile); err != nil {
				return err
			}
			conn, err := transport.Dial(bankAddr, tcfg, tlsf.CertHint())
			if err != nil {
				return err
			}
			defer conn.Close()
			bar := inv.NewProgress("restoring")
			w, rep, err := wallet.Restore(ctx, g.dir, seed, pb.NewBankClient(conn), wallet.Options{}, func(scanned uint64, found int) {
				// The end is RestoreGap indices past the last coin found.
				bar.Set(int(scanned), int(scanned)+wallet.RestoreGap)
			})
			bar.Finish()
			if errors.Is(err, wallet.ErrExists) {
				return fmt.Errorf("%s holds a wallet made from another seed; restore into a new directory", g.dir)
			}
			if err != nil {
				return cli.LockHint(err, "another wallet command is using "+g.dir)
			}
			defer w.Close()
			b, _ := json.MarshalIndent(cfg, "", "  ")
			if err := bank.WriteFileAtomic(filepath.Join(g.dir, ConfigFile), append(b, '\n'), 0o600); err != nil {
				return err
			}
			// --account, else the copy's, unless this wallet has one: a
			// restore resumed keeps the account it was given.
			from := "--account"
			if account == 0 && copyAccount != 0 {
				if _, err := w.Account(); errors.Is(err, wallet.ErrNoAccount) {
					account, from = copyAccount, "the copy"
				} else if err != nil {
					return err
				}
			}
			if account != 0 {
				if err := w.SetAccount(account); err != nil {
					return err
				}
			}
			set, err := w.Account()
			if err != nil && !errors.Is(err, wallet.ErrNoAccount) {
				return err
			}
			if copyAccount != 0 && set != copyAccount {
				inv.Notef("the copy was set to account %d; this wallet is set to %d", copyAccount, set)
			}
			out := struct {
				Scanned  uint64 `json:"indices_scanned"`
				Found    int    `json:"coins_found"`   // the coins the bank signed for the seed
				Unspent  int    `json:"coins_unspent"` // of them, those the bank holds unspent
				Spent    int    `json:"coins_spent"`   // and those it holds spent
				Added    int    `json:"coins_added"`   // of coins_found, those not in this wallet before, spent or not
				Disputed int    `json:"signatures_disputed"`
				Fresh    string `json:"fresh"`
				Account  uint64 `json:"account,omitempty"` // the account this wallet is set to
			}{rep.Scanned, rep.Found, rep.Found - rep.Spent, rep.Spent, rep.Added, rep.Disputed, rep.Fresh.String(), set}
			return inv.Print(out, func(w io.Writer) {
				// Found counts spent coins too, and Added counts them if
				// new: "restored N coins (... M new here)" read as N or M
				// coins to spend.
				fmt.Fprintf(w, "found %s of this seed at the bank in %d planchet indices: %d unspent, %d spent (%d not in this wallet before); fresh %s\n",
					cli.Plural(rep.Found, "coin"), rep.Scanned, out.Unspent, rep.Spent, rep.Added, rep.Fresh)
				if rep.Disputed > 0 {
					fmt.Fprintf(w, "%d of the bank's signatures did not verify: see 'wallet balance'\n", rep.Disputed)
				}
				switch {
				case set == 0:
					fmt.Fprintln(w, "set the account with 'wallet set-account ID' before withdrawing")
				case account != 0:
					fmt.Fprintf(w, "account %d set, from %s\n", set, from)
				}
			})
		},
	}
}
