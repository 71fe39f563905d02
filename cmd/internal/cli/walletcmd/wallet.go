// Package walletcmd is the wallet command: a blindbank wallet on a
// directory, which withdraws coins from a bank account, shows its balance,
// pays merchants, swaps, returns and recoups coins, and collects refunds;
// and, as a checkbook on the same account, buys encrypted goods and writes
// electronic checks (buy, write-check, check-status, purchases) and fetches
// the bank's signed statement (statement). cmd/wallet is its main.
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
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// Main runs wallet with the process's arguments.
func Main() int {
	cli.QuietStdlibLog()
	return cli.Main(Command())
}

// ConfigFile holds the bank's address and how to trust it, in the wallet
// directory next to the coin store.
const ConfigFile = "config.json"

// caCopy is the bank CA file copied into the wallet at init.
const caCopy = "bank-ca.pem"

// rpcTimeout bounds a short call (key fetch).
const rpcTimeout = 30 * time.Second

// Config is DIR/config.json.
type Config struct {
	Bank      string `json:"bank"`
	CAFile    string `json:"ca_file,omitempty"` // relative to the wallet directory
	Pin       string `json:"pin,omitempty"`
	Plaintext bool   `json:"plaintext,omitempty"`
}

// globals are the flags of every wallet subcommand.
type globals struct{ dir string }

// Command builds the wallet command tree.
func Command() *cli.Command {
	g := &globals{}
	def := os.Getenv("BLINDBANK_WALLET")
	if def == "" {
		if home, err := os.UserHomeDir(); err == nil {
			def = filepath.Join(home, ".blindbank-wallet")
		}
	}
	return &cli.Command{
		Name:  "wallet",
		Short: "a blindbank e-cash wallet and checkbook",
		Long: `wallet keeps anonymous e-cash coins in a directory (--wallet): it withdraws
coins from your bank account, shows what it holds and pays merchants with
them. The bank sees what you withdraw, not where you spend it.

It is also a checkbook: "wallet buy" buys goods from a merchant's till and
"wallet write-check" pays a merchant, both straight from your bank account
by payment orders signed with your account key (NetBill electronic checks).

Start with "wallet init", have the bank open an account for the printed key,
then "wallet set-account ID" and "wallet withdraw".`,
		Example: `wallet init --bank 127.0.0.1:7443 --ca ./bank/tls.crt
wallet set-account 1000
wallet withdraw EUR:10.00
wallet pay --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt --order ord-3f9a...
wallet balance
wallet return EUR:2.00
wallet buy --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt --product song-1 --out song.ogg`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&g.dir, "wallet", def, "wallet `DIR`: $BLINDBANK_WALLET if set, else ~/.blindbank-wallet")
		},
		Sub: withKeysetHint(g, []*cli.Command{
			initCommand(g), setAccountCommand(g), withdrawCommand(g), balanceCommand(g),
			payCommand(g), swapCommand(g), returnCommand(g), refundsCommand(g), recoverCommand(g), infoCommand(g),
			refreshCommand(g), recoupCommand(g), exportSeedCommand(g), restoreCommand(g), verifyLogCommand(g),
			keysetCommand(g), productsCommand(), buyCommand(g), checkStatusCommand(g), writeCheckCommand(g),
			purchasesCommand(g), statementCommand(g),
		}),
	}
}

func initCommand(g *globals) *cli.Command {
	var bankAddr string
	tlsf := &cli.TLSFlags{What: "bank"}
	return &cli.Command{
		Name:  "init",
		Short: "create a wallet for a bank and print its account key",
		Long: `init creates a new wallet in the --wallet directory for the bank at --bank:
a fresh secret seed, from which the coins and the account key derive. It
saves the bank's address and how to trust it (--ca FILE is copied into the
wallet; --pin FINGERPRINT; or --plaintext on loopback) in DIR/config.json,
fetches the bank's key set, checks its signature and pins the bank's master
key: a key set signed by any other key is refused from then on.

It prints the account public key (hex) on stdout. The bank operator opens
your account with it; then run "wallet set-account ID".

Back up its seed ("wallet export-seed"): the seed is your money, and "wallet
restore" rebuilds the wallet from it alone, asking the bank which coins the
seed made. A copy of the wallet directory backs it up too, but put it back
with "wallet restore --from-wallet COPY", never by copying it back: its
planchet counter is the copy's, and coins it made again would be coins
already spent.`,
		Example: `wallet --wallet ./alice init --bank 127.0.0.1:7443 --ca ./bank/tls.crt
wallet init --bank bank.example:7443 --pin 5f2c...e1`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&bankAddr, "bank", "", "the bank's public `ADDR` (required)")
			tlsf.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if err := checkDir(g); err != nil {
				return err
			}
			if err := cli.CheckAddr("bank", bankAddr); err != nil {
				return err
			}
			tcfg, err := tlsf.Config(bankAddr)
			if err != nil {
				return err
			}
			cfgPath := filepath.Join(g.dir, ConfigFile)
			if _, err := os.Stat(cfgPath); err == nil {
				return fmt.Errorf("%s already holds a wallet; refusing to replace it", g.dir)
			}
			// Check the bank answers with a well-signed key set before
			// creating anything.
			conn, err := transport.Dial(bankAddr, tcfg, tlsf.CertHint())
			if err != nil {
				return err
			}
			defer conn.Close()
			bc := pb.NewBankClient(conn)
			kctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			resp, err := bc.GetKeys(kctx, &pb.GetKeysRequest{})
			if err != nil {
				return fmt.Errorf("fetching the bank's keys from %s: %w", bankAddr, err)
			}
			if _, err := ecash.DecodeKeySet(resp.SignedKeyset, nil); err != nil {
				return fmt.Errorf("the bank's key set does not verify: %w", err)
			}
			if err := os.MkdirAll(g.dir, 0o700); err != nil {
				return err
			}
			w, err := wallet.Create(g.dir, wallet.Options{})
			if errors.Is(err, wallet.ErrExists) {
				// An init that stopped before writing config.json: keep the seed.
				w, err = wallet.Open(g.dir, wallet.Options{})
			}
			if err != nil {
				return err
			}
			defer w.Close()
			cfg := Config{Bank: bankAddr, Pin: tcfg.Pin, Plaintext: tcfg.Plaintext}
			if cfg.CAFile, err = copyCA(g.dir, tcfg.CAFile); err != nil {
				return err
			}
			ks, err := w.RefreshKeys(kctx, bc)
			if err != nil {
				return fmt.Errorf("storing the bank's key set: %w", err)
			}
			b, _ := json.MarshalIndent(cfg, "", "  ")
			if err := bank.WriteFileAtomic(cfgPath, append(b, '\n'), 0o600); err != nil {
				return err
			}
			key := hex.EncodeToString(w.AccountKey())
			if !inv.JSON {
				inv.Notef("wallet created in %s for the bank at %s (%s, %d denominations)", g.dir, bankAddr, ks.Currency, len(ks.Denominations))
				inv.Notef("ask the bank operator to open your account with this key, then run 'wallet set-account ID':")
			}
			out := struct {
				Wallet     string `json:"wallet"`
				Bank       string `json:"bank"`
				AccountKey string `json:"account_key"`
				Currency   string `json:"currency"`
				MasterKey  string `json:"bank_master_key"`
			}{g.dir, bankAddr, key, ks.Currency, hex.EncodeToString(ks.MasterPub)}
			return inv.Print(out, func(w io.Writer) { fmt.Fprintln(w, key) })
		},
	}
}

func setAccountCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "set-account",
		Args:  "ID",
		NArgs: 1,
		Short: "record the bank account the wallet withdraws from",
		Long: `set-account records the id of your bank account, opened by the bank operator
for the key "wallet init" printed. Withdrawals debit this account.`,
		Example: `wallet set-account 1000`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			id, err := cli.ParseID("account id", inv.Args[0])
			if err != nil {
				return err
			}
			w, _, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			if err := w.SetAccount(id); err != nil {
				return err
			}
			out := struct {
				Account uint64 `json:"account"`
			}{id}
			return inv.Print(out, func(w io.Writer) { fmt.Fprintf(w, "account set to %d\n", id) })
		},
	}
}

func withdrawCommand(g *globals) *cli.Command {
	var transcript string
	return &cli.Command{
		Name:  "withdraw",
		Args:  "AMOUNT",
		NArgs: 1,
		Short: "withdraw coins from your bank account",
		Long: `withdraw debits AMOUNT from your bank account and stores it in the wallet as
blind-signed coins, in denominations chosen so that many amounts can later be
paid exactly. It prints the coins withdrawn and the wallet's fresh total; on a
terminal it shows a progress bar for large amounts.

Each batch of coins is saved before it is requested, so an interrupted
withdrawal is never lost nor debited twice: "wallet recover" (or the next
withdraw) finishes it. --transcript appends every protocol message as JSON
lines, for auditing.

The request carries this computer's time: the bank refuses one dated more
than 5 minutes ahead of its own clock, and withdraw then says by how much.
Nothing is debited; set the clock right and run withdraw again.`,
		Example: `wallet withdraw EUR:10.00
wallet withdraw EUR:250.00 --transcript withdraw.jsonl`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			amt, err := cli.ParsePositiveAmount(inv.Args[0])
			if err != nil {
				return err
			}
			return withBank(g, transcript, amt, func(w *wallet.Wallet, bank pb.BankClient) error {
				if _, err := w.Account(); err != nil {
					return err
				}
				// Refusals an earlier withdraw met stay until 'wallet
				// recover' reports them: noted once, by the withdraw that
				// met them, not again by every later one.
				earlier := map[[16]byte]bool{}
				if rs, rerr := w.RefusedWithdrawals(); rerr == nil {
					for _, r := range rs {
						earlier[r.Nonce] = true
					}
				}
				bar := inv.NewProgress("withdrawing")
				coins, err := w.Withdraw(ctx, bank, amt, func(done, total int) { bar.Set(done, total) })
				bar.Finish()
				// An interrupted withdrawal this one sent again first,
				// refused outright: dropped, and reported by recover.
				if rs, rerr := w.RefusedWithdrawals(); rerr == nil {
					met := 0
					for _, r := range rs {
						if !earlier[r.Nonce] {
							met++
						}
					}
					if met > 0 {
						inv.Notef("the bank refused %s outright; 'wallet recover' reports them", cli.Plural(met, "interrupted withdrawal"))
					}
				}
				got, fee, werr := coinTotal(w, amt.Currency, coins)
				if werr != nil {
					return werr
				}
				if err != nil {
					if len(coins) > 0 {
						inv.Notef("withdrew %s in %s before the error", got, cli.Plural(len(coins), "coin"))
					}
					return withdrawError(err)
				}
				bal, err := w.Balance()
				if err != nil {
					return err
				}
				out := struct {
					Withdrawn string `json:"withdrawn"`
					Fees      string `json:"fees"`
					Coins     int    `json:"coins"`
					Fresh     string `json:"fresh"`
				}{got.String(), fee.String(), len(coins), bal.Fresh.String()}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "withdrew %s in %s; fresh %s\n", got, cli.Plural(len(coins), "coin"), bal.Fresh)
					if !fee.IsZero() {
						fmt.Fprintf(w, "the bank charged %s of withdraw fees on top\n", fee)
					}
				})
			})
		},
	}
}

// coinTotal adds up the values of freshly withdrawn coins.
func coinTotal(w *wallet.Wallet, cur string, coins []ecash.Coin) (value, fee ecash.Amount, err error) {
	if len(coins) == 0 {
		return ecash.Amount{Currency: cur}, ecash.Amount{Currency: cur}, nil
	}
	ids := make([]ecash.Hash, len(coins))
	for i, c := range coins {
		ids[i] = c.ID()
	}
	return w.CoinFees(ids, func(f ecash.Fees) ecash.Amount { return f.Withdraw })
}

// setClock is what to do about a withdrawal the bank refused as dated
// ahead of its clock, said alike by withdraw and recover.
const setClock = "set this computer's clock right (turn on network time)"

// accountLocked is what to do about a withdrawal kept pending because the
// bank locked the account for this address, said alike by withdraw and
// recover (it is no lost answer).
const accountLocked = "the bank locked the account for this computer's address after repeated failed authentications (%v); the pending withdrawal is kept: run 'wallet recover' once the lock lifts (at the bank's midnight, UTC, or when its operator unlocks the account)"

func withdrawError(err error) error {
	if errors.Is(err, wallet.ErrAccountLocked) {
		return fmt.Errorf(accountLocked, err)
	}
	if errors.Is(err, wallet.ErrPending) {
		return fmt.Errorf("the bank did not confirm the withdrawal (%v); it is saved in the wallet: run 'wallet recover' to finish it (nothing is debited twice)", err)
	}
	if errors.Is(err, wallet.ErrClockAhead) || errors.Is(err, wallet.ErrClockBehind) {
		return fmt.Errorf("withdrawal refused: %w; nothing was debited: %s, then withdraw again", err, setClock)
	}
	if _, ok := status.FromError(err); ok {
		return fmt.Errorf("withdrawal refused: %w", err)
	}
	return err
}

func balanceCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "balance",
		Short: "show the coins the wallet holds",
		Long: `balance shows the wallet's spendable (fresh) total, the total held in
payments and swaps not yet settled, a refund being collected among them
(pending: 'wallet recover' settles it), and how many coins of each value it
holds. Part of the fresh total may be revealed: coins the bank saw in a
payment it did not take, which pay only once swapped for new ones (else
the bank could link that payment to the next); 'wallet refresh' swaps
them. Coins past their denomination's deposit deadline are worth nothing
(the bank takes them in no payment or swap): they are shown apart, as
expired, not in the fresh total. It works offline. It also lists any answer of the bank to a
withdrawal or swap that did not verify: the bank committed the operation
but its signatures are wrong, which a retry cannot change; the wallet
keeps the request and the answer as evidence and goes on.

Every wallet command that reports the coins held after it (withdraw, pay,
swap, return, refunds, recoup, recover, restore) reports this spendable
total as "fresh", in --json and in text. "balance" is only ever a bank
account's: the account balance a check's receipt reports, a statement's.`,
		Example: `wallet balance
wallet balance --json`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			w, _, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			return printBalance(inv, w)
		},
	}
}

// dispute is a bank answer that did not verify (wallet.Dispute), as shown.
type dispute struct {
	Kind   string    `json:"kind"`
	At     time.Time `json:"at"`
	Lost   string    `json:"lost"`
	Coins  int       `json:"coins"`
	Reason string    `json:"reason"`
}

type coinCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

func printBalance(inv *cli.Invocation, w *wallet.Wallet) error {
	bal, err := w.Balance()
	if err != nil {
		return err
	}
	pendingW, err := w.PendingWithdrawals()
	if err != nil {
		return err
	}
	disputes, err := w.Disputes()
	if err != nil {
		return err
	}
	return showBalance(inv, bal, pendingW, disputes)
}

// showBalance prints what printBalance read from the wallet.
func showBalance(inv *cli.Invocation, bal wallet.Balance, pendingW int, disputes []wallet.Dispute) error {
	type valued struct {
		a ecash.Amount
		n int
	}
	var vs []valued
	total := 0
	for v, n := range bal.Coins {
		a, err := ecash.ParseAmount(v)
		if err != nil {
			return err
		}
		vs = append(vs, valued{a, n})
		total += n
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].a.Value > vs[j].a.Value })
	out := struct {
		Fresh              string      `json:"fresh"`
		Revealed           string      `json:"revealed"` // part of fresh
		Pending            string      `json:"pending"`
		FreshCoins         int         `json:"fresh_coins"`
		Coins              []coinCount `json:"coins"`
		PendingWithdrawals int         `json:"pending_withdrawals"`
		Disputes           []dispute   `json:"disputes"`
		Expired            string      `json:"expired"` // not in fresh: worth nothing
		ExpiredCoins       int         `json:"expired_coins"`
	}{bal.Fresh.String(), bal.Revealed.String(), bal.Pending.String(), total, []coinCount{}, pendingW, []dispute{}, bal.Expired.String(), bal.ExpiredCoins}
	for _, d := range disputes {
		out.Disputes = append(out.Disputes, dispute{d.Kind, d.At, d.Lost.String(), len(d.Indices), d.Reason})
	}
	for _, v := range vs {
		out.Coins = append(out.Coins, coinCount{v.a.String(), v.n})
	}
	return inv.Print(out, func(wr io.Writer) {
		t := cli.NewTable(wr)
		t.Row("fresh:", fmt.Sprintf("%s (%s)", bal.Fresh, cli.Plural(total, "coin")))
		if !bal.Revealed.IsZero() {
			t.Row("revealed:", fmt.Sprintf("%s of it, seen by the bank in a refused payment: 'wallet refresh' swaps it before it pays", bal.Revealed))
		}
		t.Row("pending:", bal.Pending.String())
		if bal.ExpiredCoins > 0 {
			t.Row("expired:", fmt.Sprintf("%s (%s) past their deposit deadline: worth nothing, not in fresh", bal.Expired, cli.Plural(bal.ExpiredCoins, "coin")))
		}
		t.Flush()
		if len(vs) > 0 {
			t = cli.NewTable(wr)
			for _, v := range vs {
				t.Row("", v.a.String(), fmt.Sprintf("x %d", v.n))
			}
			t.Flush()
		}
		if pendingW > 0 {
			fmt.Fprintf(wr, "%s: run 'wallet recover' to finish them\n", cli.Plural(pendingW, "interrupted withdrawal"))
		}
		for _, d := range out.Disputes {
			fmt.Fprintf(wr, "%s lost: the bank's signatures on %s of a %s at %s do not verify, kept as evidence (%s)\n",
				d.Lost, cli.Plural(d.Coins, "coin"), d.Kind, d.At.Format(time.RFC3339), d.Reason)
		}
	})
}

func recoverCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Short: "finish interrupted withdrawals, payments and swaps",
		Long: `recover re-sends withdrawals that were saved but never completed (the wallet
or the connection died mid-way): the bank answers a repeated request with the
same signatures and debits it once. It also finishes interrupted swaps (a
refund's collection among them), asks the bank about payments whose answer
was lost (paid: the receipt is kept; too late to be paid: the coins come
back), and swaps coins the bank saw in a payment it did not take ("revealed"
in 'wallet balance'). It is always safe to run; with nothing of this kind
pending it does not contact the bank. An interrupted withdrawal the bank
refuses outright (the account no longer covers it, say), now or when an
earlier withdraw sent it again, is dropped and listed once ("refused").
One it refuses as dated ahead of its clock stays unfinished: the bank may
have taken it before, and takes it once its clock reaches that date;
recover says so, and that this computer's clock is to be set right.
One refused because the bank locked the account for this computer's
address stays unfinished too: recover settles the rest, then fails saying
so (run it again once the lock lifts); and one a bank replica refuses as
naming a denomination it does not serve yet (it lags the key set) stays
unfinished until a later recover reaches one that does.
An interrupted swap (or recoup) the bank refuses outright when sent again
is not ended on that alone: an earlier send may still be committing at the
bank. If the bank shows it committed, its new coins are taken in
("completed"); if not, it stays pending, its coins reserved ("kept
pending", until when), and ends with its coins fresh again only once the
refusal still stands a day after its last send ("refused"); each is
listed ("swaps").

An interrupted payment can also be finished by running the same "wallet pay"
again.`,
		Example: `wallet recover`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			w, cfg, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			before, err := w.PendingWithdrawals()
			if err != nil {
				return err
			}
			start, err := w.Balance()
			if err != nil && !errors.Is(err, wallet.ErrNoKeys) {
				return err
			}
			// A swap whose outputs a catch-up took in already counts
			// pending only the outputs not held (those held are fresh),
			// nothing if all are: not settled, it is work all the same.
			swaps, err := w.PendingSwaps()
			if err != nil {
				return err
			}
			// Refusals an earlier withdraw met (an interrupted withdrawal
			// it sent again) are reported here, by Recover.
			unreported, err := w.RefusedWithdrawals()
			if err != nil {
				return err
			}
			// And the swaps refused when sent again that another command
			// settled since (completed, or ended as refused).
			settled, err := w.UnreportedSwaps()
			if err != nil {
				return err
			}
			work := before > 0 || swaps > 0 || len(unreported) > 0 || settled > 0 || !start.Pending.IsZero() || !start.Revealed.IsZero()
			var rep *wallet.RecoverReport
			var locked error // the lock's error, returned once the report is shown
			if work {
				conn, err := dialBank(cfg)
				if err != nil {
					return err
				}
				defer conn.Close()
				if rep, err = w.Recover(ctx, pb.NewBankClient(conn)); err != nil {
					if errors.Is(err, wallet.ErrAccountLocked) {
						// What Recover settled besides is reported once:
						// shown before the lock's error.
						locked = fmt.Errorf(accountLocked, err)
					} else if errors.Is(err, wallet.ErrPending) {
						return fmt.Errorf("the bank did not answer (%v); run 'wallet recover' again", err)
					} else {
						return err
					}
				}
			}
			refused := []refusedJSON{}
			var swapsOut []swapJSON
			if rep != nil {
				for _, r := range rep.Refused {
					refused = append(refused, refusedJSON{hex.EncodeToString(r.Nonce[:]), r.Amount.String(), r.Reason, r.At.UTC().Format(time.RFC3339)})
				}
				for _, r := range rep.Swaps {
					sj := swapJSON{Request: hex.EncodeToString(r.Request[:]), Recoup: r.Recoup, Outcome: r.Outcome.String(), Reason: r.Reason, At: r.At.UTC().Format(time.RFC3339)}
					if !r.Until.IsZero() {
						sj.Until = r.Until.UTC().Format(time.RFC3339)
					}
					swapsOut = append(swapsOut, sj)
				}
			}
			bal, err := w.Balance()
			if err != nil {
				return err
			}
			after, err := w.PendingWithdrawals()
			if err != nil {
				return err
			}
			var ahead string
			if rep != nil {
				ahead = rep.ClockAhead
			}
			out := struct {
				Recovered  int           `json:"recovered"`
				Unfinished int           `json:"unfinished"`
				Fresh      string        `json:"fresh"`
				Pending    string        `json:"pending"`
				Revealed   string        `json:"revealed"`
				Refused    []refusedJSON `json:"refused"`
				ClockAhead string        `json:"clock_ahead,omitempty"` // the bank's refusal for the date of one left unfinished
				Swaps      []swapJSON    `json:"swaps,omitempty"`       // interrupted swaps and recoups the bank refused when sent again
			}{before - after, after, bal.Fresh.String(), bal.Pending.String(), bal.Revealed.String(), refused, ahead, swapsOut}
			if err := inv.Print(out, func(wr io.Writer) {
				recoverSummary(wr, work, before, after, bal)
				clockAheadSummary(wr, ahead)
				refusedSummary(wr, refused)
				swapsSummary(wr, swapsOut)
			}); err != nil {
				return err
			}
			return locked
		},
	}
}

// clockAheadSummary says, if the bank refused an interrupted withdrawal
// for now as dated ahead of its clock (ahead, its words), that this
// computer's clock is ahead and to set it: the withdrawal stays
// unfinished, and a recover once the clocks agree finishes it.
func clockAheadSummary(wr io.Writer, ahead string) {
	if ahead == "" {
		return
	}
	fmt.Fprintf(wr, "refused for now by the bank: an interrupted withdrawal, as dated ahead of its clock: %q\n", ahead)
	fmt.Fprintf(wr, "this computer's clock is ahead of the bank's: %s; the withdrawal stays unfinished (the bank may have taken it already), and 'wallet recover' finishes it once the bank's clock reaches its date\n", setClock)
}

// refusedJSON is an interrupted withdrawal the bank refused outright, as
// 'wallet recover' reports it.
type refusedJSON struct {
	Nonce  string `json:"nonce"`
	Amount string `json:"amount"`
	Reason string `json:"reason"`
	At     string `json:"at"`
}

// refusedSummary lists the interrupted withdrawals the bank refused
// outright: dropped, they will not be sent again.
func refusedSummary(wr io.Writer, refused []refusedJSON) {
	for _, r := range refused {
		fmt.Fprintf(wr, "refused by the bank: the interrupted withdrawal of %s (request %s…): %q; it is dropped and will not be sent again\n", r.Amount, r.Nonce[:8], r.Reason)
	}
}

// swapJSON is an interrupted swap or recoup re-issue the bank refused
// when sent again, and what became of it (wallet.SwapRecovery), as
// 'wallet recover' reports it.
type swapJSON struct {
	Request string `json:"request"`
	Recoup  bool   `json:"recoup,omitempty"`
	Outcome string `json:"outcome"` // "completed", "kept pending", "refused"
	Reason  string `json:"reason"`
	At      string `json:"at"`
	Until   string `json:"until,omitempty"` // kept pending: when it ends as refused if the refusal still stands
}

// swapsSummary says what became of the interrupted swaps the bank
// refused when sent again: completed from what the bank shows it
// committed, kept pending while an earlier send may still commit, or
// ended as refused once that can no longer be.
func swapsSummary(wr io.Writer, swaps []swapJSON) {
	for _, s := range swaps {
		what := "swap"
		if s.Recoup {
			what = "recoup re-issue"
		}
		switch s.Outcome {
		case wallet.SwapCompleted.String():
			fmt.Fprintf(wr, "completed: the interrupted %s %s…, which the bank refused when sent again (%q) but shows committed: its new coins are taken in\n", what, s.Request[:16], s.Reason)
		case wallet.SwapKeptPending.String():
			fmt.Fprintf(wr, "kept pending: the interrupted %s %s…, refused by the bank when sent again (%q); an earlier send may still commit, so its coins stay reserved until %s unless the bank shows it committed first\n", what, s.Request[:16], s.Reason, s.Until)
		default:
			fmt.Fprintf(wr, "refused by the bank: the interrupted %s %s… (%q), and no earlier send of it can still commit: its coins are fresh again, except any the bank proved spent in another request\n", what, s.Request[:16], s.Reason)
		}
	}
}

// recoverSummary says what 'wallet recover' did: the withdrawals it
// finished of those pending before, and what is left. A withdrawal or a
// swap is left pending when the bank has not answered it, refused it for
// now as dated ahead of its clock or at a replica behind the key set (a
// withdrawal), or answered with a key the wallet's key set does not list
// (one made since the key set was fetched: a later recovery finishes it;
// or one whose deposit window has closed, whose coins are worth nothing).
func recoverSummary(wr io.Writer, work bool, before, after int, bal wallet.Balance) {
	switch {
	case !work:
		fmt.Fprintf(wr, "nothing to recover; fresh %s\n", bal.Fresh)
		return
	case before > 0:
		fmt.Fprintf(wr, "finished %d of %s; fresh %s\n", before-after, cli.Plural(before, "interrupted withdrawal"), bal.Fresh)
	default:
		fmt.Fprintf(wr, "recovered; fresh %s\n", bal.Fresh)
	}
	left := "the bank has not decided it, refused it for now (as dated ahead of its clock, at a replica that does not serve its denominations yet, or for the account's lock), or answered with a key this wallet's key set does not list; run 'wallet recover' later"
	if after > 0 {
		fmt.Fprintf(wr, "still unfinished: %s (%s)\n", cli.Plural(after, "withdrawal"), left)
	}
	if !bal.Pending.IsZero() {
		fmt.Fprintf(wr, "still pending: %s (%s)\n", bal.Pending, left)
	}
	if !bal.Revealed.IsZero() {
		fmt.Fprintf(wr, "still revealed: %s (not swapped yet; run 'wallet refresh')\n", bal.Revealed)
	}
}

func infoCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "info",
		Short: "show the wallet's bank, account and account key",
		Long: `info shows where the wallet is, its bank and how it is trusted, its account
id and account public key, and the pinned bank key set. It works offline.`,
		Example: `wallet info`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			w, cfg, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			out := struct {
				Wallet     string `json:"wallet"`
				Bank       string `json:"bank"`
				Trust      string `json:"trust"`
				Account    uint64 `json:"account,omitempty"`
				AccountKey string `json:"account_key"`
				Currency   string `json:"currency"`
				MasterKey  string `json:"bank_master_key"`
			}{Wallet: g.dir, Bank: cfg.Bank, Trust: trust(g, cfg), AccountKey: hex.EncodeToString(w.AccountKey())}
			if id, err := w.Account(); err == nil {
				out.Account = id
			} else if !errors.Is(err, wallet.ErrNoAccount) {
				return err
			}
			ks, err := w.KeySet()
			if err != nil {
				return err
			}
			out.Currency, out.MasterKey = ks.Currency, hex.EncodeToString(ks.MasterPub)
			return inv.Print(out, func(wr io.Writer) {
				t := cli.NewTable(wr)
				t.Row("wallet:", g.dir)
				t.Row("bank:", cfg.Bank+" ("+out.Trust+")")
				if out.Account != 0 {
					t.Row("account:", out.Account)
				} else {
					t.Row("account:", "not set (wallet set-account ID)")
				}
				t.Row("account key:", out.AccountKey)
				t.Row("currency:", ks.Currency)
				t.Row("bank master key:", out.MasterKey)
				t.Flush()
			})
		},
	}
}

func trust(g *globals, cfg *Config) string {
	switch {
	case cfg.Pin != "":
		return "pinned certificate " + cfg.Pin
	case cfg.CAFile != "":
		return "certificate " + cfg.CAFile
	case cfg.Plaintext:
		return "plaintext"
	}
	return "none"
}

// copyCA copies the bank's CA certificate file into the wallet directory
// and returns its name there ("" if there is none to copy).
func copyCA(dir, caFile string) (string, error) {
	if caFile == "" {
		return "", nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", err
	}
	return caCopy, bank.WriteFileAtomic(filepath.Join(dir, caCopy), pem, 0o644)
}

func checkDir(g *globals) error {
	if g.dir == "" {
		return cli.Usagef("no wallet directory: give --wallet DIR or set BLINDBANK_WALLET")
	}
	return nil
}

// open opens the wallet in g.dir with its config.
func open(g *globals, opts wallet.Options) (*wallet.Wallet, *Config, error) {
	if err := checkDir(g); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(filepath.Join(g.dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no wallet in %s: create one with 'wallet --wallet %s init --bank ADDR --ca FILE'", g.dir, g.dir)
	}
	if err != nil {
		return nil, nil, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(g.dir, ConfigFile), err)
	}
	if cfg.CAFile != "" && !filepath.IsAbs(cfg.CAFile) {
		cfg.CAFile = filepath.Join(g.dir, cfg.CAFile)
	}
	if opts.Anonymous == nil {
		// Swaps and payment lookups each on a connection of their own,
		// not the one the account's withdrawals use (PROTOCOL §4d).
		opts.Anonymous = func(context.Context) (pb.BankClient, io.Closer, error) {
			conn, err := dialBank(&cfg)
			if err != nil {
				return nil, nil, err
			}
			return pb.NewBankClient(conn), conn, nil
		}
	}
	w, err := wallet.Open(g.dir, opts)
	if err != nil {
		return nil, nil, cli.LockHint(err, "another wallet command is using "+g.dir)
	}
	return w, &cfg, nil
}

// dialBank connects to the wallet's bank as config.json says.
func dialBank(cfg *Config) (*grpc.ClientConn, error) {
	return transport.Dial(cfg.Bank, transport.ClientConfig{CAFile: cfg.CAFile, Pin: cfg.Pin, Plaintext: cfg.Plaintext},
		cli.CertHintOption("bank", "the --ca or --pin that 'wallet init' saved in "+ConfigFile))
}

// transcriptOptions opens --transcript FILE for appending.
func transcriptOptions(path string) (wallet.Options, func(), error) {
	if path == "" {
		return wallet.Options{}, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return wallet.Options{}, nil, fmt.Errorf("--transcript: %w", err)
	}
	return wallet.Options{Transcript: f}, func() { f.Close() }, nil
}
