// Command demo runs a whole blindbank economy in one process: a bank, a
// merchant and two wallets talking real gRPC over TLS on loopback, with
// Pebble stores in a temporary directory. It withdraws, pays, and shows the
// bank refusing a double spend with a proof anyone can verify.
//
//	go run ./cmd/demo
//	go run ./cmd/demo --dir ./demo-data --verbose
//	go run ./cmd/demo --json
//
// It takes the shared command-line conventions of the other tools
// (cmd/internal/cli): --help, --json, one-line errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func main() { os.Exit(cli.Main(command())) }

func command() *cli.Command {
	var (
		dir     string
		verbose bool
	)
	return &cli.Command{
		Name:  "demo",
		Short: "run a whole blindbank economy in one process and narrate it",
		Long: `demo runs a bank, a merchant and two wallets in one process over real gRPC
with TLS on loopback, on Pebble stores in a temporary directory, and
narrates: accounts opened and funded, coins withdrawn, an order paid with
coins sealed to the bank, and a copied wallet's double spend refused with a
proof.

With --json the narration goes to stderr and stdout gets the outcome: the
ledger's balances and whether the double spend was refused with a proof
that verifies.`,
		Example: `demo
demo --dir ./demo-data --verbose
demo --json`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "", "keep the bank, merchant and wallet data in `DIR` (default: a temporary directory, removed at exit)")
			fs.BoolVar(&verbose, "verbose", false, "show the daemons' logs (on stderr)")
		},
		NArgs: 0,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			narrate := inv.Stdout
			if inv.JSON {
				narrate = inv.Stderr
			}
			var logTo io.Writer
			if verbose {
				logTo = inv.Stderr
			}
			res, err := run(ctx, dir, logTo, narrate)
			if res != nil && dir != "" {
				res.Dir = dir // kept; a temporary one is gone
			}
			if err != nil {
				return err
			}
			if !inv.JSON {
				return nil
			}
			return inv.Print(res, func(io.Writer) {})
		},
	}
}

// result is what the demo ends with, for --json.
type result struct {
	Dir                string    `json:"dir,omitempty"` // with --dir
	Accounts           []holding `json:"accounts"`
	Wallets            []holding `json:"wallets"`
	Outstanding        string    `json:"ecash_outstanding"`
	DoubleSpendRefused bool      `json:"double_spend_refused_with_proof"`
	ProofVerified      bool      `json:"proof_verified"`
}

// holding is one account's or wallet's balance.
type holding struct {
	Name    string `json:"name"`
	Account uint64 `json:"account,omitempty"`
	Balance string `json:"balance"`
	Coins   int    `json:"coins,omitempty"`
}

// run plays the demo, narrating to out; logTo, if not nil, gets the
// daemons' logs.
func run(ctx context.Context, dir string, logTo io.Writer, out io.Writer) (*result, error) {
	where := "data in %s, kept (--dir)"
	if dir == "" {
		tmp, err := os.MkdirTemp("", "blindbank-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
		where = "data in %s, removed at exit; --dir DIR keeps it"
	}
	t0 := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "%6.2f "+format+"\n", append([]any{time.Since(t0).Seconds()}, args...)...)
	}
	log := slog.New(slog.DiscardHandler)
	if logTo != nil {
		// Debug: the bank logs each operation there (withdraw, deposit,
		// swap), which is what --verbose is for.
		log = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	res := &result{}

	say("== blindbank demo ("+where+")", dir)
	say("-- generating the bank's keys: 14 RSA-2048 denominations, EUR:0.01 to EUR:81.92 ...")
	start := time.Now()
	bk, err := node.StartBank(node.BankConfig{
		Dir: filepath.Join(dir, "bank"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Keys: bank.KeyConfig{Currency: "EUR"}, Log: log,
	})
	if err != nil {
		return nil, err
	}
	defer bk.Close()
	say("   bank listening on %s (TLS, certificate sha256 %s…), admin on %s  [%s]", bk.Addr, bk.Fingerprint[:16], bk.AdminAddr, time.Since(start).Round(time.Millisecond))
	adminConn, err := transport.DialAdmin(bk.AdminAddr, bk.Token)
	if err != nil {
		return nil, err
	}
	defer adminConn.Close()
	admin := pb.NewBankAdminClient(adminConn)
	bankConn, err := transport.Dial(bk.Addr, transport.ClientConfig{CAFile: bk.CertFile})
	if err != nil {
		return nil, err
	}
	defer bankConn.Close()
	bankc := pb.NewBankClient(bankConn)

	// The merchant.
	mdir := filepath.Join(dir, "merchant")
	mpub, err := merchant.Init(mdir)
	if err != nil {
		return nil, err
	}
	macct, err := admin.OpenAccount(ctx, &pb.OpenAccountRequest{Name: "Books & Bytes", PublicKey: mpub, Merchant: true})
	if err != nil {
		return nil, err
	}
	mn, err := node.StartMerchant(ctx, node.MerchantConfig{
		Dir: mdir, BankAddr: bk.Addr, BankTLS: transport.ClientConfig{CAFile: bk.CertFile}, Account: macct.Account,
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Log: log,
	})
	if err != nil {
		return nil, err
	}
	defer mn.Close()
	say("-- merchant \"Books & Bytes\" has account %d, serving wallets on %s", macct.Account, mn.Addr)
	mconn, err := transport.Dial(mn.Addr, transport.ClientConfig{CAFile: mn.CertFile})
	if err != nil {
		return nil, err
	}
	defer mconn.Close()
	shop := pb.NewMerchantClient(mconn)
	madminConn, err := transport.DialAdmin(mn.AdminAddr, mn.Token)
	if err != nil {
		return nil, err
	}
	defer madminConn.Close()
	orders := pb.NewMerchantAdminClient(madminConn)

	// Two customers.
	type person struct {
		name string
		w    *wallet.Wallet
		acct uint64
		dir  string
	}
	var people []*person
	for _, name := range []string{"alice", "bob"} {
		p := &person{name: name, dir: filepath.Join(dir, "wallet-"+name)}
		if p.w, err = wallet.Create(p.dir, wallet.Options{}); err != nil {
			return nil, err
		}
		defer p.w.Close()
		resp, err := admin.OpenAccount(ctx, &pb.OpenAccountRequest{Name: name, PublicKey: p.w.AccountKey()})
		if err != nil {
			return nil, err
		}
		p.acct = resp.Account
		if err := p.w.SetAccount(p.acct); err != nil {
			return nil, err
		}
		if _, err := admin.Credit(ctx, &pb.CreditRequest{Account: p.acct, Amount: "EUR:50.00", Memo: "salary"}); err != nil {
			return nil, err
		}
		say("-- %s opens account %d and is credited EUR:50.00", name, p.acct)
		people = append(people, p)
	}
	alice, bob := people[0], people[1]

	for _, x := range []struct {
		p      *person
		amount string
	}{{alice, "EUR:10.00"}, {bob, "EUR:5.00"}} {
		coins, err := x.p.w.Withdraw(ctx, bankc, ecash.MustParseAmount(x.amount), nil)
		if err != nil {
			return nil, err
		}
		bal, err := balance(ctx, admin, x.p.acct)
		if err != nil {
			return nil, err
		}
		say("-- %s withdraws %s as %s; the bank saw only blinded values. Account now %s", x.p.name, x.amount, cli.Plural(len(coins), "blind-signed coin"), bal)
	}

	// Alice backs up her wallet before paying: the copy holds the same coins.
	if err := alice.w.Close(); err != nil {
		return nil, err
	}
	cloneDir := filepath.Join(dir, "wallet-alice-copy")
	if err := os.CopyFS(cloneDir, os.DirFS(alice.dir)); err != nil {
		return nil, err
	}
	if alice.w, err = wallet.Open(alice.dir, wallet.Options{}); err != nil {
		return nil, err
	}
	defer alice.w.Close()
	say("-- alice copies her wallet directory (same coins in two places)")

	// pay has p pay a new order: fetching its request from the merchant, or
	// from the order's payment URI (as a QR code at the till gives it).
	pay := func(p *person, w *wallet.Wallet, amount, summary string, fromURI bool) error {
		oresp, err := orders.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: amount, Summary: summary})
		if err != nil {
			return err
		}
		confirm := func(o *wallet.Offer) error {
			say("   %s's wallet shows: pay %s to merchant account %d for %q? yes", p.name, o.Request.Amount, o.Request.MerchantAccount, o.Summary)
			return nil
		}
		var rcpt *ecash.DepositReceipt
		if fromURI {
			offer, perr := ecash.ParsePaymentURI(oresp.PaymentUri)
			if perr != nil {
				return perr
			}
			say("   %s scans the order's payment URI (%d characters): %.40s…", p.name, len(oresp.PaymentUri), oresp.PaymentUri)
			rcpt, err = w.PayOffer(ctx, bankc, shop, offer, confirm)
		} else {
			rcpt, err = w.Pay(ctx, bankc, shop, mn.Addr, oresp.OrderId, confirm)
		}
		if err != nil {
			return payError(p.name, oresp.OrderId, err)
		}
		say("   paid: bank receipt for %s over %s, verified against the bank's signing key", rcpt.Total, cli.Plural(len(rcpt.Coins), "coin"))
		return nil
	}
	say("-- alice orders \"The Art of Computer Programming, vol. 1\" for EUR:3.50")
	if err := pay(alice, alice.w, "EUR:3.50", "The Art of Computer Programming, vol. 1", false); err != nil {
		return nil, err
	}
	say("-- bob orders \"Applied Cryptography\" for EUR:1.28, paying from the payment URI: one round trip fewer")
	if err := pay(bob, bob.w, "EUR:1.28", "Applied Cryptography", true); err != nil {
		return nil, err
	}

	say("-- the copy of alice's wallet tries to spend the same coins on another EUR:3.50 order")
	clone, err := wallet.Open(cloneDir, wallet.Options{})
	if err != nil {
		return nil, err
	}
	defer clone.Close()
	err = pay(alice, clone, "EUR:3.50", "The Art of Computer Programming, vol. 1 (again)", false)
	ds := wallet.DoubleSpendFromError(err)
	if ds == nil {
		return nil, fmt.Errorf("the double spend was not refused with a proof: %v", err)
	}
	ks, _ := bk.Bank.KeySet()
	if verr := ds.Proof.Verify(ks); verr != nil {
		return nil, fmt.Errorf("double-spend proof does not verify: %w", verr)
	}
	res.DoubleSpendRefused, res.ProofVerified = true, true
	say("   refused: %v", ds)
	say("   the proof carries the coin's own signature on its earlier payment %x…, countersigned by the bank; it verifies", ds.Proof.Earlier.PaymentHash[:8])

	say("== ledger")
	for _, a := range []struct {
		name string
		id   uint64
	}{{"alice", alice.acct}, {"bob", bob.acct}, {"Books & Bytes", macct.Account}} {
		bal, err := balance(ctx, admin, a.id)
		if err != nil {
			return nil, err
		}
		say("   %-14s account %-5d %s", a.name, a.id, bal)
		res.Accounts = append(res.Accounts, holding{Name: a.name, Account: a.id, Balance: bal})
	}
	for _, p := range []*person{alice, bob} {
		b, err := p.w.Balance()
		if err != nil {
			return nil, err
		}
		n := countCoins(b.Coins)
		say("   %-14s wallet        %s in %s", p.name, b.Fresh, cli.Plural(n, "coin"))
		res.Wallets = append(res.Wallets, holding{Name: p.name, Balance: b.Fresh.String(), Coins: n})
	}
	out2, err := bk.Bank.Store().Account(ctx, bank.AccountOutstanding)
	if err != nil {
		return nil, err
	}
	res.Outstanding = bk.Bank.Money(out2.Balance).String()
	say("   e-cash outstanding (the bank's liability): %s", res.Outstanding)
	return res, nil
}

// payError explains a payment the demo could not make. One whose change
// the bank did not answer (*wallet.ChangePendingError, which wraps
// ErrPending) sent nothing to the merchant, and the wallet's words say to
// retry, which the demo does not: it says so, and that it stops there.
func payError(who, order string, err error) error {
	var change *wallet.ChangePendingError
	if !errors.As(err, &change) {
		return err
	}
	swap := "the swap making change for it"
	if change.Recoup {
		swap = "a recoup of a revoked coin the wallet had pending"
	}
	return fmt.Errorf("%s's order %s was not paid, and nothing was sent to the merchant: the bank did not answer %s (%w); that coin is left pending in %s's wallet, and the demo stops here", who, order, swap, change.Err, who)
}

func balance(ctx context.Context, admin pb.BankAdminClient, id uint64) (string, error) {
	resp, err := admin.GetAccount(ctx, &pb.GetAccountRequest{Account: id})
	if err != nil {
		return "", err
	}
	return resp.Balance, nil
}

func countCoins(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}
