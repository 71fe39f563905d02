// Package bankdcmd is the bankd command: it serves a bank node and talks to
// a running node's admin service; manages the bank's keys (generate, sign
// offline, import, extend, prune, rotate, revoke: keys); shows and checks
// its configuration (config); and runs the separate signer process that can
// hold the denomination keys (signer). cmd/bankd is its main; the command
// tests run it in-process.
package bankdcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/procs"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Main runs bankd with the process's arguments.
func Main() int { return cli.Main(Command()) }

// adminTimeout bounds one admin call.
const adminTimeout = 30 * time.Second

// Command builds the bankd command tree.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "bankd",
		Short: "the blindbank bank node",
		Long: `bankd runs a blindbank bank node, which issues blind-signed e-cash coins and
accepts deposits and electronic checks from merchants, and administers a
running node: opening accounts, crediting them, showing their balances, and
setting their spending limits. It checks configuration files, and shows and
protects the bank's keys: encryption at rest under a passphrase, and the
offline signing of the key set by a master key kept away from the bank.

A node keeps everything in one data directory: its keys (keys.json), its
ledger, its TLS certificate (tls.crt) and its admin token (admin.token).`,
		Example: `bankd serve --data ./bank
bankd serve --config /etc/blindbank/bankd.json
bankd admin --data ./bank open-account --name alice --key 3b6a27bc...
bankd admin --data ./bank credit --account 1000 --amount EUR:100.00
bankd admin --data ./bank balance --account 1000
bankd config check /etc/blindbank/bankd.json
bankd keys show --data ./bank
bankd admin --data ./bank backup --to /var/backups/blindbank/ledger-2026-11-25
bankd admin --data ./bank revoke-denomination --denomination 3f9a0c12`,
		Sub: []*cli.Command{serveCommand(), adminCommand(), configCommand(), keysCommand(), signerCommand()},
	}
}

func serveCommand() *cli.Command {
	var fl config.Flags
	return &cli.Command{
		Name:  "serve",
		Short: "run the bank node until interrupted",
		Long: `serve runs the bank node: the public gRPC service (wallets withdraw, merchants
deposit) over TLS on --listen, and the admin service on the loopback address
--admin-listen, guarded by the token in DIR/admin.token.

On first start it creates DIR, the bank's keys (one key per denomination:
with RSA this takes a few seconds), a self-signed TLS certificate and the admin token;
later starts load them, and --currency, --rsa-bits, --cipher and
--denominations are then ignored. With --key-passphrase-file the keys are
encrypted at rest under the passphrase in that file, and an encrypted key
file needs it to start; a key file in clear still loads, with a warning
('bankd keys encrypt' converts it).

With --tls-cert and --tls-key it serves that certificate instead of the
self-signed one. --client-ca makes merchants' deposits and checks (or, with
--client-auth all, every call) need a client certificate signed by a CA in
that file; --admin-client-ca puts the admin listener on TLS, requiring a
client certificate from those CAs besides the token. The certificate, key
and CA files are reloaded when they change on disk: renew them in place,
no restart (connections already open keep their certificate).

Once listening it prints the addresses, the certificate file and its SHA-256
fingerprint (clients pin it or trust the file) and the token file, and writes
the same to DIR/addresses.json (removed on exit), so ":0" ports can be used.
Logs go to stderr. SIGINT or SIGTERM stops it gracefully: calls in flight
finish and the ledger is closed.

` + precedence,
		Example: `bankd serve --data ./bank
bankd serve --config /etc/blindbank/bankd.json
BLINDBANK_DATA=/var/lib/blindbank bankd serve --key-passphrase-file /run/credentials/bankd/passphrase
bankd serve --data ./bank --listen 0.0.0.0:7443 --log-format json
bankd serve --data ./test-bank --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --denominations EUR:0.50,EUR:1.00,EUR:2.00,EUR:4.00`,
		Flags: fl.RegisterServe,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			cfg, err := settings(inv, &fl)
			if err != nil {
				return err
			}
			data, err := dataDir(cfg)
			if err != nil {
				return err
			}
			log, err := (&cli.LogFlags{Format: cfg.LogFormat, Level: cfg.LogLevel}).Logger(inv.Stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(log) // Pebble's messages go through the same handler
			keyOpts, err := keyOptions(cfg)
			if err != nil {
				return err
			}
			keysPath := filepath.Join(data, bank.KeysFile)
			_, statErr := os.Stat(keysPath)
			exists := statErr == nil
			kc := cfg.KeyConfig()
			if exists && !cfg.Given("currency") {
				kc.Currency = "" // whatever the keys hold
			}
			if exists {
				for _, f := range []string{"denominations", "rsa_bits", "cipher", "master_public_key"} {
					if cfg.Given(f) {
						inv.Notef("note: %s exists; %s applies only to a new bank", keysPath, f)
					}
				}
			}
			if !exists && kc.MasterPub != nil {
				return fmt.Errorf("%s does not exist: keys for an offline master key are made with 'bankd keys generate' and their key set signed offline before the first start", keysPath)
			}
			if !exists && cfg.Signer != "" {
				return fmt.Errorf("%s does not exist: with --signer, give bankd the key file the signer loaded", keysPath)
			}
			// The directory first: a data directory that cannot be made
			// fails before any note that promises keys.
			if err := os.MkdirAll(data, 0o700); err != nil {
				return err
			}
			if !exists {
				inv.Notef("%s", keyGenNote(cfg))
			}
			gomaxprocs := procs.Raise() // before the servers size their pools by it
			n, err := node.StartBank(node.BankConfig{
				Dir: data, Listen: cfg.Listen, AdminListen: cfg.AdminListen, Keys: kc, Plaintext: cfg.Plaintext, Log: log, Store: cfg.Store, CacheSize: cfg.CacheSize, RevocationPoll: cfg.RevocationPoll,
				KeyPassphrase: keyOpts.Passphrase, TLS: cfg.TLS(), Signer: cfg.Signer, Limits: cfg.RateLimits,
			})
			if err != nil {
				return cli.LockHint(keyFileError(err), "is another bankd serving "+data+"?")
			}
			ks, _ := n.Bank.KeySet()
			kinfo, _ := bank.InspectKeyFile(keysPath)
			info := serveInfo{
				ServeInfo: cli.ServeInfo{
					Addr: n.Addr, AdminAddr: n.AdminAddr, TLS: !cfg.Plaintext, CertFile: n.CertFile,
					Fingerprint: n.Fingerprint, TokenFile: n.TokenFile, PID: os.Getpid(),
					AdminTLS: n.AdminTLS, Signer: cfg.Signer,
				},
				KeysFile: keysPath, Keys: "loaded", KeysEncrypted: kinfo.Encrypted, Currency: ks.Currency,
				MasterKey: hex.EncodeToString(ks.MasterPub), BankID: ks.BankID().String(),
				MasterOffline: n.Bank.Keys().Master == nil,
			}
			if n.KeysCreated {
				info.Keys = "created"
			}
			if cfg.ClientAuth != config.ClientAuthNone {
				info.ClientAuth = cfg.ClientAuth
			}
			for _, d := range ks.Denominations {
				info.Denominations = append(info.Denominations, d.Value.String())
			}
			if err := cli.WriteAddresses(data, info); err != nil {
				n.Close()
				return err
			}
			defer cli.RemoveAddresses(data)
			inv.Print(info, func(w io.Writer) {
				t := cli.NewTable(w)
				cli.ServeRows(t, "bank", &info.ServeInfo)
				t.Row("keys:", fmt.Sprintf("%s (%s, %s, %s, %s)", info.Keys, info.KeysFile, info.Currency, cli.Plural(len(info.Denominations), "denomination"), encryptedText(kinfo)))
				master := info.MasterKey
				if info.MasterOffline {
					master += " (kept offline)"
				}
				t.Row("master key:", master)
				t.Flush()
			})
			log.Info("bank serving", "addr", n.Addr, "admin_addr", n.AdminAddr, "tls", !cfg.Plaintext, "keys", info.Keys, "keys_encrypted", kinfo.Encrypted, "gomaxprocs", gomaxprocs)
			werr := n.Wait(ctx)
			if werr != nil {
				log.Error("listener failed", "err", werr)
			} else {
				log.Info("shutting down")
			}
			cerr := n.Close()
			if werr != nil {
				return werr
			}
			if cerr != nil {
				return fmt.Errorf("closing the ledger: %w", cerr)
			}
			log.Info("stopped")
			return nil
		},
	}
}

// keyGenNote is the note shown before a new bank's keys are generated:
// which keys, "4 × RSA-2048, 3 × CS", and a word on the wait when RSA keys
// are among them (CS keys take no noticeable time).
func keyGenNote(cfg *config.Bank) string {
	specs := cfg.Denominations
	if len(specs) == 0 {
		for _, v := range bank.DefaultDenominations(cfg.Currency) {
			specs = append(specs, bank.DenomSpec{Value: v, Cipher: cfg.Cipher})
		}
	}
	rsaN, csN := 0, 0
	for _, d := range specs {
		if d.Cipher == ecash.CipherCS {
			csN++
		} else {
			rsaN++
		}
	}
	var parts []string
	if rsaN > 0 {
		parts = append(parts, fmt.Sprintf("%d × RSA-%d", rsaN, cfg.RSABits))
	}
	if csN > 0 {
		parts = append(parts, fmt.Sprintf("%d × CS", csN))
	}
	note := "generating denomination keys (" + strings.Join(parts, ", ") + ")…"
	if rsaN > 0 {
		note += " this takes a few seconds"
	}
	return note
}

type serveInfo struct {
	cli.ServeInfo
	KeysFile      string   `json:"keys_file"`
	Keys          string   `json:"keys"` // "created" or "loaded"
	KeysEncrypted bool     `json:"keys_encrypted"`
	Currency      string   `json:"currency"`
	MasterKey     string   `json:"master_key"`
	BankID        string   `json:"bank_id"`        // SHA-256 of the master key
	MasterOffline bool     `json:"master_offline"` // keys.json holds only its public half
	Denominations []string `json:"denominations"`
}

func adminCommand() *cli.Command {
	admin := &cli.AdminFlags{What: "bank", DefaultAddr: "127.0.0.1:7444"}
	return &cli.Command{
		Name:  "admin",
		Short: "administer a running bank node",
		Long: `admin talks to a running bank's admin service on its loopback address, with
the token from the bank's data directory. Give --data DIR (the bank's data
directory: the token and, while the bank runs, its admin address are read from
there), or --admin ADDR and --token-file FILE.`,
		Example: `bankd admin --data ./bank open-account --name alice --key 3b6a27bc...
bankd admin --admin 127.0.0.1:7444 --token-file ./bank/admin.token balance --account 1000
bankd admin --data ./bank set-limits --account 1000 --per-transaction EUR:50.00 --per-day EUR:200.00
bankd admin --data ./bank unlock --account 1000
bankd admin --data ./bank backup --to /var/backups/blindbank/ledger-2026-11-25
bankd admin --data ./bank revoke-denomination --denomination 3f9a0c12
bankd admin --admin bank.internal:7444 --token-file admin.token --ca bank-ca.pem \
    --client-cert operator.crt --client-key operator.key balance --account 1000`,
		Flags: admin.Register,
		Sub: []*cli.Command{
			openAccountCommand(admin),
			creditCommand(admin),
			balanceCommand(admin),
			owedCommand(admin),
			payoutCommand(admin),
			revokeDenominationCommand(admin),
			setLimitsCommand(admin),
			unlockCommand(admin),
			backupCommand(admin),
		},
	}
}

// adminCall dials the admin service and runs f with a bounded context; a
// certificate that does not verify is explained (AdminFlags.CertHint).
func adminCall(ctx context.Context, inv *cli.Invocation, a *cli.AdminFlags, f func(context.Context, pb.BankAdminClient) error) error {
	conn, _, err := a.Dial(inv)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return a.Explain(f(ctx, pb.NewBankAdminClient(conn)))
}

func openAccountCommand(a *cli.AdminFlags) *cli.Command {
	var (
		name, key string
		merchant  bool
	)
	return &cli.Command{
		Name:  "open-account",
		Short: "open a customer or merchant account and print its id",
		Long: `open-account opens an account for the holder of an Ed25519 public key: a
customer's wallet key (printed by "wallet init") or, with --merchant, a
merchant's key (printed by "merchantd init"). It prints the new account's id
(just the number; with --json an object). Run again with the same name, key
and kind (say, after a lost answer), it prints the same id and opens nothing
more; a key that has another account is refused.`,
		Example: `bankd admin --data ./bank open-account --name alice --key 3b6a27bc...
bankd admin --data ./bank open-account --merchant --name "Coffee Shop" --key 9f1e...`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "name", "", "account holder's `NAME` (required, 1 to 128 bytes of text: no control characters)")
			fs.StringVar(&key, "key", "", "holder's Ed25519 public key as `HEX` (required)")
			fs.BoolVar(&merchant, "merchant", false, "open a merchant account (can receive deposits)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if name == "" {
				return cli.Usagef("--name NAME is required")
			}
			if key == "" {
				return cli.Usagef("--key HEX is required")
			}
			pub, err := hex.DecodeString(strings.TrimSpace(key))
			if err != nil || len(pub) != 32 {
				return fmt.Errorf("bad --key: want an Ed25519 public key as 64 hex digits")
			}
			if len(name) > 128 {
				return fmt.Errorf("bad --name: at most 128 bytes")
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				resp, err := c.OpenAccount(ctx, &pb.OpenAccountRequest{Name: name, PublicKey: pub, Merchant: merchant})
				if err != nil {
					return fmt.Errorf("opening the account: %w", err)
				}
				out := struct {
					Account  uint64 `json:"account"`
					Name     string `json:"name"`
					Merchant bool   `json:"merchant"`
				}{resp.Account, name, merchant}
				return inv.Print(out, func(w io.Writer) { fmt.Fprintln(w, resp.Account) })
			})
		},
	}
}

func creditCommand(a *cli.AdminFlags) *cli.Command {
	var account, amount, memo, reference string
	return &cli.Command{
		Name:  "credit",
		Short: "credit an account with money from outside and print the new balance",
		Long: `credit funds an account from outside the bank (a transfer in, cash paid in)
and says what it did, with the account's new balance:

    credited EUR:100.00 to account 1000 ("alice"); balance EUR:100.00

With --json: {"account": 1000, "name": "alice", "credited": "EUR:100.00",
"balance": "EUR:100.00"} ("name" left out if the bank did not send it).

Give --reference with a key of your choosing (e.g. the incoming transfer's
id) to make a retry safe: a credit with a reference already used credits
nothing more (and prints the same line, with the balance as it is now).
Without one, the command makes one up and, should the bank's answer be
lost, prints it so that the retry credits once.`,
		Example: `bankd admin --data ./bank credit --account 1000 --amount EUR:100.00 --memo "cash in" --reference slip-0042`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "account `ID` (required)")
			fs.StringVar(&amount, "amount", "", "`AMOUNT` to credit, e.g. EUR:100.00 (required)")
			fs.StringVar(&memo, "memo", "", "`TEXT` recorded with the posting")
			fs.StringVar(&reference, "reference", "", "idempotency `KEY`: a retry with the same key credits once")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if account == "" {
				return cli.Usagef("--account ID is required")
			}
			if amount == "" {
				return cli.Usagef("--amount AMOUNT is required")
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			amt, err := cli.ParsePositiveAmount(amount)
			if err != nil {
				return err
			}
			given := reference != ""
			if !given {
				var r [12]byte
				if _, err := rand.Read(r[:]); err != nil {
					return err
				}
				reference = "credit-" + hex.EncodeToString(r[:])
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				resp, err := c.Credit(ctx, &pb.CreditRequest{Account: id, Amount: amt.String(), Memo: memo, Reference: reference})
				if code := status.Code(err); !given && (code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled) {
					return fmt.Errorf("crediting account %d: %w\nthe credit may have been made: retry with --reference %s, which credits once", id, err, reference)
				}
				if err != nil {
					return fmt.Errorf("crediting account %d: %w", id, err)
				}
				out := struct {
					Account  uint64 `json:"account"`
					Name     string `json:"name,omitempty"`
					Credited string `json:"credited"`
					Balance  string `json:"balance"`
				}{id, resp.Name, amt.String(), resp.Balance}
				return inv.Print(out, func(w io.Writer) { fmt.Fprintln(w, creditText(id, resp.Name, amt, resp.Balance)) })
			})
		},
	}
}

// creditText says what a credit did: 'credited EUR:10.00 to account 1003
// ("alice"); balance EUR:25.00'. The name is quoted (%q), so that a
// holder's name cannot pass for the rest of the line; a bank that sent
// none (an older one) leaves it out.
func creditText(account uint64, name string, amount ecash.Amount, balance string) string {
	holder := ""
	if name != "" {
		holder = fmt.Sprintf(" (%q)", name)
	}
	return fmt.Sprintf("credited %s to account %d%s; balance %s", amount, account, holder, balance)
}

func balanceCommand(a *cli.AdminFlags) *cli.Command {
	var (
		account string
		history int
	)
	return &cli.Command{
		Name:  "balance",
		Short: "show an account's balance and recent postings",
		Long: `balance shows an account: holder, kind, key, balance and its most recent
postings (credits, withdrawals, deposits), newest first.`,
		Example: `bankd admin --data ./bank balance --account 1000
bankd admin --data ./bank balance --account 1000 --history 50 --json`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "account `ID` (required)")
			fs.IntVar(&history, "history", 10, "show the last `N` postings (0 for none, at most 1000)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if account == "" {
				return cli.Usagef("--account ID is required")
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			if history < 0 || history > 1000 {
				return fmt.Errorf("bad --history %d: want 0 to 1000", history)
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				resp, err := c.GetAccount(ctx, &pb.GetAccountRequest{Account: id, HistoryLimit: uint32(max(history, 1))})
				if err != nil {
					return fmt.Errorf("account %d: %w", id, err)
				}
				if history == 0 {
					resp.History = nil
				}
				return printAccount(inv, resp)
			})
		},
	}
}

type postingJSON struct {
	Seq     uint64 `json:"seq"`
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Amount  string `json:"amount"`
	Balance string `json:"balance"`
	Memo    string `json:"memo,omitempty"`
}

func printAccount(inv *cli.Invocation, a *pb.GetAccountResponse) error {
	out := struct {
		Account  uint64        `json:"account"`
		Name     string        `json:"name"`
		Merchant bool          `json:"merchant"`
		Key      string        `json:"key"`
		Balance  string        `json:"balance"`
		History  []postingJSON `json:"history"`
		Limits   limitsJSON    `json:"limits"`
		Locked   bool          `json:"locked"`
	}{a.Account, a.Name, a.Merchant, hex.EncodeToString(a.PublicKey), a.Balance, []postingJSON{}, limitsOf(a), a.Locked}
	for _, p := range a.History {
		out.History = append(out.History, postingJSON{
			Seq: p.Seq, Time: time.UnixMilli(p.TimeUnixMs).UTC().Format(time.RFC3339Nano),
			Kind: p.Kind, Amount: p.Amount, Balance: p.Balance, Memo: p.Memo,
		})
	}
	return inv.Print(out, func(w io.Writer) {
		kind := "customer"
		switch {
		case a.Merchant:
			kind = "merchant"
		case bank.IsSystem(a.Account):
			kind = "system"
		}
		t := cli.NewTable(w)
		// Names opened before the bank checked them may hold control
		// characters: shown replaced, never sent to the terminal.
		t.Row("account:", fmt.Sprintf("%d (%s, %s)", a.Account, ecash.ShownText(a.Name, bank.MaxNameLen), kind))
		if out.Key != "" {
			t.Row("key:", out.Key)
		}
		t.Row("balance:", a.Balance)
		if a.LimitPerTransaction != "" || a.LimitPerDay != "" {
			t.Row("limits:", limitsText(out.Limits))
		}
		if a.Locked {
			t.Row("locked:", "yes, for some clients, after repeated failed authentication from them (bankd admin unlock)")
		}
		t.Flush()
		if len(a.History) == 0 {
			return
		}
		fmt.Fprintln(w)
		t = cli.NewTable(w)
		t.Row("SEQ", "TIME", "KIND", "AMOUNT", "BALANCE", "MEMO")
		for _, p := range a.History {
			t.Row(p.Seq, cli.FormatTime(time.UnixMilli(p.TimeUnixMs)), p.Kind, p.Amount, p.Balance, p.Memo)
		}
		t.Flush()
	})
}

type limitsJSON struct {
	PerTransaction string `json:"per_transaction"` // "none" when unlimited
	PerDay         string `json:"per_day"`
	SpentToday     string `json:"spent_today,omitempty"`
}

func limitsOf(a *pb.GetAccountResponse) limitsJSON {
	none := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	return limitsJSON{none(a.LimitPerTransaction), none(a.LimitPerDay), a.SpentToday}
}

func limitsText(l limitsJSON) string {
	s := fmt.Sprintf("%s per transaction, %s per day", l.PerTransaction, l.PerDay)
	if l.SpentToday != "" {
		s += " (" + l.SpentToday + " spent today)"
	}
	return s
}

// parseLimit reads a --per-transaction or --per-day value: an amount, or
// "none" (no limit, sent as "").
func parseLimit(flagName, s string) (string, error) {
	if s == "none" {
		return "", nil
	}
	a, err := cli.ParsePositiveAmount(s)
	if err != nil {
		return "", fmt.Errorf("bad --%s: %w (or \"none\" to remove the limit)", flagName, err)
	}
	return a.String(), nil
}

func setLimitsCommand(a *cli.AdminFlags) *cli.Command {
	var account, perTx, perDay string
	return &cli.Command{
		Name:  "set-limits",
		Short: "set an account's spending limits",
		Long: `set-limits sets how much an account may spend: at most --per-transaction in
one withdrawal or check, and at most --per-day in total per day (UTC).
The limits apply to e-cash withdrawals and electronic checks alike; a check
over a limit is declined with a signed receipt. Give an amount, or "none" to
remove a limit; a limit not given keeps its current value. It prints the
account's limits as they now stand.`,
		Example: `bankd admin --data ./bank set-limits --account 1000 --per-transaction EUR:50.00 --per-day EUR:200.00
bankd admin --data ./bank set-limits --account 1000 --per-day none`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "account `ID` (required)")
			fs.StringVar(&perTx, "per-transaction", "", "most one transaction may spend: an `AMOUNT` such as EUR:50.00, or none")
			fs.StringVar(&perDay, "per-day", "", "most the account may spend in one day: an `AMOUNT`, or none")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if account == "" {
				return cli.Usagef("--account ID is required")
			}
			if !inv.IsSet("per-transaction") && !inv.IsSet("per-day") {
				return cli.Usagef("give --per-transaction, --per-day or both")
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			var tx, day string
			if inv.IsSet("per-transaction") {
				if tx, err = parseLimit("per-transaction", perTx); err != nil {
					return err
				}
			}
			if inv.IsSet("per-day") {
				if day, err = parseLimit("per-day", perDay); err != nil {
					return err
				}
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				// SetLimits sets both: keep the current value of a limit not given.
				cur, err := c.GetAccount(ctx, &pb.GetAccountRequest{Account: id, HistoryLimit: 1})
				if err != nil {
					return fmt.Errorf("account %d: %w", id, err)
				}
				if !inv.IsSet("per-transaction") {
					tx = cur.LimitPerTransaction
				}
				if !inv.IsSet("per-day") {
					day = cur.LimitPerDay
				}
				if _, err := c.SetLimits(ctx, &pb.SetLimitsRequest{Account: id, PerTransaction: tx, PerDay: day}); err != nil {
					return fmt.Errorf("setting the limits of account %d: %w", id, err)
				}
				now, err := c.GetAccount(ctx, &pb.GetAccountRequest{Account: id, HistoryLimit: 1})
				if err != nil {
					return fmt.Errorf("account %d: %w", id, err)
				}
				l := limitsOf(now)
				out := struct {
					Account uint64 `json:"account"`
					limitsJSON
				}{id, l}
				return inv.Print(out, func(w io.Writer) { fmt.Fprintf(w, "account %d: %s\n", id, limitsText(l)) })
			})
		},
	}
}

func unlockCommand(a *cli.AdminFlags) *cli.Command {
	var account string
	return &cli.Command{
		Name:  "unlock",
		Short: "unlock an account locked after failed authentications",
		Long: `unlock clears an account's failed authentications, from every source.
Five in one day from one source (bad signatures on withdrawals, checks or
statement requests from one address, or on checks relayed by one merchant)
lock the account out for that source until the next day (UTC); unlock
lifts every such lock now.`,
		Example: `bankd admin --data ./bank unlock --account 1000`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&account, "account", "", "account `ID` (required)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if account == "" {
				return cli.Usagef("--account ID is required")
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				if _, err := c.Unlock(ctx, &pb.UnlockRequest{Account: id}); err != nil {
					return fmt.Errorf("unlocking account %d: %w", id, err)
				}
				out := struct {
					Account uint64 `json:"account"`
					Locked  bool   `json:"locked"`
				}{id, false}
				return inv.Print(out, func(w io.Writer) { fmt.Fprintf(w, "account %d unlocked\n", id) })
			})
		},
	}
}

func backupCommand(a *cli.AdminFlags) *cli.Command {
	var (
		to      string
		timeout time.Duration
	)
	return &cli.Command{
		Name:  "backup",
		Short: "write a consistent checkpoint of the running bank's ledger",
		Long: `backup asks the running bank for a checkpoint of its ledger (Pebble's
DB.Checkpoint after flushing the write-ahead log) in the directory --to, on
the bank's host, while it keeps serving. Every operation acknowledged before
the command started is in it. --to must not exist; its parent must. The bank
writes the checkpoint beside it, checks it (its balances sum to zero) and
renames it into place, so --to holds a whole checkpoint or nothing. A
backup this command gives up on (--timeout, Ctrl-C), or that the bank's stop
cuts off, ends there and leaves nothing. A relative --to is taken relative
to this command's working directory.

On the same file system as the ledger the checkpoint's tables are hard links:
quick and small at first, but they keep old tables alive as the bank
compacts. Copy it elsewhere (tar, rsync) and delete it. To restore, stop the
bank and put the checkpoint in place of DIR/ledger (docs/OPERATIONS.md).

The key file is not part of it: back up DIR/keys.json on its own. A bank
whose ledger is in PostgreSQL refuses: back up the database with
pg_basebackup or pg_dump.`,
		Example: `bankd admin --data /var/lib/blindbank backup --to /var/backups/blindbank/ledger-$(date +%Y%m%dT%H%M%S)`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&to, "to", "", "the checkpoint `DIR` to create on the bank's host (required; must not exist)")
			cli.DurationVar(fs, &timeout, "timeout", 30*time.Minute, "give up, and have the bank stop the backup, after `DURATION` ("+cli.DurationForms+")")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if to == "" {
				return cli.Usagef("--to DIR is required")
			}
			// A timeout of 0 gave up at once, before the bank was asked.
			if timeout <= 0 {
				return cli.Usagef("--timeout must be positive, not %s", cli.FormatDuration(timeout))
			}
			t, err := a.Target(inv)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res, err := node.AdminClient{Addr: t.Addr, Token: t.Token, TLS: t.TLS}.RequestBackup(ctx, to)
			if err != nil {
				return a.Explain(err)
			}
			return inv.Print(res, func(w io.Writer) {
				tb := cli.NewTable(w)
				tb.Row("backup:", res.Path)
				tb.Row("size:", fmt.Sprintf("%d files, %d bytes", res.Files, res.Bytes))
				tb.Row("ledger:", fmt.Sprintf("%d accounts (the bank's own included), balances sum to zero", res.Accounts))
				tb.Row("as of:", fmt.Sprintf("%s (everything acknowledged before is in it)", cli.FormatTime(res.Started)))
				tb.Row("took:", fmt.Sprintf("%.2fs", res.Seconds))
				tb.Flush()
			})
		},
	}
}
