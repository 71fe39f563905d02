// Package merchantdcmd is the merchantd command: it creates a merchant's
// key, serves the merchant node (with a catalogue, a NetBill till), creates
// and inspects orders and gives refunds through a running node's admin
// service, verifies the bank's settlement statements against the merchant's
// receipts, checks the bank's audit log for the merchant's entries
// (verify-log) and checks a catalogue (products). cmd/merchantd is its
// main.
package merchantdcmd

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/procs"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// Main runs merchantd with the process's arguments.
func Main() int { return cli.Main(Command()) }

const adminTimeout = 30 * time.Second

// maxTTL is the longest order lifetime the merchant accepts.
const maxTTL = 30 * 24 * time.Hour

// Command builds the merchantd command tree.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "merchantd",
		Short: "the blindbank merchant node",
		Long: `merchantd runs a blindbank merchant: it issues signed payment requests for
orders, takes wallets' sealed payments, deposits them at the bank and records
the bank's receipt. With a catalogue it is also a NetBill till, selling
files for electronic checks paid from the customers' bank accounts.

Setup: "merchantd init" makes the merchant key; the bank operator opens a
merchant account for it ("bankd admin open-account --merchant"); then
"merchantd serve" runs the node, and "merchantd order" creates orders and
shows their status.`,
		Example: `merchantd init --data ./shop
merchantd serve --data ./shop --bank 127.0.0.1:7443 --bank-ca ./bank/tls.crt --account 1001
merchantd order --data ./shop create --amount EUR:3.50 --summary "1 espresso"
merchantd order --data ./shop status ord-3f9a...`,
		Sub: []*cli.Command{initCommand(), serveCommand(), orderCommand(), refundCommand(), settlementCommand(), verifyLogCommand(), productsCommand(), keysetCommand()},
	}
}

func initCommand() *cli.Command {
	var data string
	return &cli.Command{
		Name:  "init",
		Short: "create the merchant's signing key and print its public key",
		Long: `init creates DIR (if needed) and the merchant's Ed25519 signing key in
DIR/merchant.key, and prints the public key as hex on stdout. The bank
operator opens the merchant account with it:

    bankd admin --data BANKDIR open-account --merchant --name NAME --key HEX

init refuses to replace an existing key.`,
		Example: `merchantd init --data ./shop`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "", "data `DIR` of the merchant (required; created if missing)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if data == "" {
				return cli.Usagef("--data DIR is required")
			}
			path := filepath.Join(data, merchant.KeyFile)
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s already holds a merchant key (%s); refusing to replace it", data, path)
			}
			pub, err := merchant.Init(data)
			if err != nil {
				return err
			}
			key := hex.EncodeToString(pub)
			if !inv.JSON {
				inv.Notef("merchant key written to %s", path)
				inv.Notef("ask the bank operator to open a merchant account for it:\n  bankd admin --data BANKDIR open-account --merchant --name NAME --key %s", key)
			}
			out := struct {
				PublicKey string `json:"public_key"`
				KeyFile   string `json:"key_file"`
			}{key, path}
			return inv.Print(out, func(w io.Writer) { fmt.Fprintln(w, key) })
		},
	}
}

func serveCommand() *cli.Command {
	var (
		data, bankAddr, account, listen, adminListen, catalogue, publicAddr, bankMaster string
		plaintext                                                                       bool
		logf                                                                            cli.LogFlags
	)
	bankTLS := &cli.TLSFlags{Prefix: "bank-", What: "bank", WithClientCert: true}
	return &cli.Command{
		Name:  "serve",
		Short: "run the merchant node until interrupted",
		Long: `serve runs the merchant node: the wallet-facing gRPC service over TLS on
--listen and the admin service (orders) on the loopback address
--admin-listen, guarded by the token in DIR/admin.token (created on first
start, like the self-signed TLS certificate DIR/tls.crt).

It connects to the bank at --bank, trusting it by one of --bank-ca,
--bank-pin or --bank-plaintext (and presenting --bank-client-cert and
--bank-client-key to a bank that requires a client certificate), and
deposits payments into merchant account --account. Before it listens it
checks with the bank that --account belongs to the merchant key (a signed
statement request) and is a merchant account (the bank pays out no other),
and refuses to start if the bank says it does not or is not; if the bank
cannot answer, it warns and starts. Once listening it
prints the addresses, the certificate and its SHA-256 fingerprint (wallets
pin it or trust the file) and the token file, and writes them to
DIR/addresses.json (removed on exit). Logs go to stderr. SIGINT or SIGTERM
stops it gracefully.

The first start pins the bank's master key, the one that signs its key
set, in DIR (trust on first use), or takes --bank-master, the key "bankd
keys show" prints as "master key:"; from then on serve refuses a bank
whose key set another master key signs. When the bank rotates its signing
key, serve fetches the new key set by itself.

A deposit whose outcome the merchant missed (the bank's answer lost, a
crash, the wallet gone) is settled with the bank at start, every 30
seconds, and when the order's status is asked ("deposits in flight" in
the log).

Orders carry a payment URI that a wallet pays without fetching the order
first ("merchantd order create --uri"). It names the address wallets dial:
--public-addr, or --listen's address unless that is a wildcard such as
0.0.0.0:7543 (then, without --public-addr, orders have no URI).

With --catalogue DIR it is also a till that sells the files listed in
DIR/catalogue.json for electronic checks (see "merchantd products --help"
for the format): it quotes prices, delivers the goods encrypted under a
one-time key, endorses the customers' payment orders and forwards them to
the bank. The catalogue is checked when serve starts; a product file
changed afterwards is not sold until a restart. Plain checks
("wallet write-check") are deposited with or without a catalogue.`,
		Example: `merchantd serve --data ./shop --bank 127.0.0.1:7443 --bank-ca ./bank/tls.crt --account 1001
merchantd serve --data ./shop --bank 127.0.0.1:7443 --bank-ca ./bank/tls.crt --account 1001 --catalogue ./shop-files
merchantd serve --data ./shop --bank bank.example:7443 --bank-pin 5f2c...e1 --account 1001 --listen 0.0.0.0:7543 --public-addr shop.example:7543`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "", "data `DIR` made by merchantd init (required)")
			fs.StringVar(&bankAddr, "bank", "", "the bank's public `ADDR` (required)")
			fs.StringVar(&account, "account", "", "the merchant's account `ID` at the bank (required)")
			fs.StringVar(&listen, "listen", "127.0.0.1:7543", "public gRPC `ADDR` for wallets (port 0 picks a free port)")
			fs.StringVar(&adminListen, "admin-listen", "127.0.0.1:7544", "admin gRPC `ADDR`; must be loopback")
			fs.StringVar(&publicAddr, "public-addr", "", "the `HOST:PORT` wallets dial, named in payment URIs (default: --listen's, unless a wildcard)")
			fs.BoolVar(&plaintext, "plaintext", false, "serve wallets without TLS (loopback only; for tests)")
			fs.StringVar(&catalogue, "catalogue", "", "sell the products of `DIR`/catalogue.json by electronic check")
			fs.StringVar(&bankMaster, "bank-master", "", "the bank's master public key, `HEX` (as \"bankd keys show\" prints it): refuse a bank that presents another")
			bankTLS.Register(fs)
			logf.Register(fs)
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if data == "" {
				return cli.Usagef("--data DIR is required")
			}
			if account == "" {
				return cli.Usagef("--account ID is required")
			}
			if err := cli.CheckAddr("bank", bankAddr); err != nil {
				return err
			}
			if err := cli.CheckAddr("listen", listen); err != nil {
				return err
			}
			if err := cli.CheckAddr("admin-listen", adminListen); err != nil {
				return err
			}
			if err := cli.CheckListen(listen, adminListen, plaintext); err != nil {
				return err
			}
			if publicAddr != "" {
				if err := ecash.CheckMerchantAddr(publicAddr); err != nil {
					return cli.Usagef("bad --public-addr: %v", err)
				}
			}
			id, err := cli.ParseID("--account", account)
			if err != nil {
				return err
			}
			var master ed25519.PublicKey
			if bankMaster != "" {
				if master, err = hex.DecodeString(bankMaster); err != nil || len(master) != ed25519.PublicKeySize {
					return cli.Usagef("bad --bank-master: want the %d-byte master public key in hex", ed25519.PublicKeySize)
				}
			}
			tlsCfg, err := bankTLS.Config(bankAddr)
			if err != nil {
				return err
			}
			log, err := logf.Logger(inv.Stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(log) // Pebble's messages go through the same handler
			if data, err = filepath.Abs(data); err != nil {
				return err
			}
			if catalogue != "" {
				// Check the catalogue before connecting to anything.
				if _, err := merchant.LoadCatalogue(catalogue); err != nil {
					return err
				}
				if catalogue, err = filepath.Abs(catalogue); err != nil {
					return err
				}
			}
			key, err := merchant.LoadKey(data)
			if errors.Is(err, merchant.ErrNotInit) {
				return fmt.Errorf("no merchant key in %s: run 'merchantd init --data %s' first", data, data)
			} else if err != nil {
				return err
			}
			// Before anything listens or is written: is --account ours?
			conn, err := transport.Dial(bankAddr, tlsCfg, bankTLS.CertHint())
			if err != nil {
				return err
			}
			err = checkAccount(ctx, pb.NewBankClient(conn), id, key, time.Now(), log)
			conn.Close()
			if err != nil {
				return err
			}
			gomaxprocs := procs.Raise() // before the servers size their pools by it
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			n, err := node.StartMerchant(startCtx, node.MerchantConfig{
				Dir: data, BankAddr: bankAddr, BankTLS: tlsCfg, BankDial: []grpc.DialOption{bankTLS.CertHint()}, Account: id,
				Listen: listen, AdminListen: adminListen, Plaintext: plaintext, Log: log, Catalogue: catalogue,
				PublicAddr: publicAddr, BankMaster: master,
			})
			cancel()
			if err != nil {
				return keysetHint(cli.LockHint(err, "is another merchantd serving "+data+"?"), data)
			}
			info := serveInfo{
				ServeInfo: cli.ServeInfo{
					Addr: n.Addr, AdminAddr: n.AdminAddr, TLS: !plaintext, CertFile: n.CertFile,
					Fingerprint: n.Fingerprint, TokenFile: n.TokenFile, PID: os.Getpid(),
				},
				Bank: bankAddr, Account: id, PublicKey: hex.EncodeToString(n.Merchant.PublicKey()), BankMaster: hex.EncodeToString(n.Merchant.BankMaster()),
				Catalogue: catalogue, Products: len(n.Merchant.Catalogue().Products()),
			}
			if err := cli.WriteAddresses(data, info); err != nil {
				n.Close()
				return err
			}
			defer cli.RemoveAddresses(data)
			inv.Print(info, func(w io.Writer) {
				t := cli.NewTable(w)
				cli.ServeRows(t, "merchant", &info.ServeInfo)
				t.Row("bank:", fmt.Sprintf("%s, merchant account %d", bankAddr, id))
				t.Row("merchant key:", info.PublicKey)
				t.Row("bank master key:", info.BankMaster+" (pinned)")
				if catalogue != "" {
					t.Row("catalogue:", fmt.Sprintf("%s (%s)", catalogue, cli.Plural(info.Products, "product")))
				}
				t.Flush()
			})
			log.Info("merchant serving", "addr", n.Addr, "admin_addr", n.AdminAddr, "bank", bankAddr, "account", id, "gomaxprocs", gomaxprocs)
			rctx, stopReconcile := context.WithCancel(ctx)
			reconciled := make(chan struct{})
			go func() {
				defer close(reconciled)
				reconcile(rctx, n.Merchant, log)
			}()
			werr := n.Wait(ctx)
			stopReconcile()
			<-reconciled
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
				return fmt.Errorf("closing the order store: %w", cerr)
			}
			log.Info("stopped")
			return nil
		},
	}
}

// reconcileEvery is how often serve settles deposits in flight.
const reconcileEvery = 30 * time.Second

// reconcile settles the deposits whose outcome the merchant missed
// (merchant.Reconcile), at once and then every reconcileEvery, until ctx
// ends.
func reconcile(ctx context.Context, m *merchant.Merchant, log *slog.Logger) {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		paid, err := m.Reconcile(ctx)
		if paid > 0 {
			log.Info("deposits in flight settled", "paid", paid)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("deposits in flight not settled; retrying later", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

type serveInfo struct {
	cli.ServeInfo
	Bank      string `json:"bank"`
	Account   uint64 `json:"account"`
	PublicKey string `json:"public_key"`
	// BankMaster is the bank's master key the merchant pinned (hex).
	BankMaster string `json:"bank_master_key"`
	Catalogue  string `json:"catalogue,omitempty"`
	Products   int    `json:"products"`
}

func orderCommand() *cli.Command {
	admin := &cli.AdminFlags{What: "merchant", DefaultAddr: "127.0.0.1:7544"}
	return &cli.Command{
		Name:  "order",
		Short: "create orders and show their status on a running merchant",
		Long: `order talks to a running merchant's admin service on its loopback address,
with the token from the merchant's data directory: it creates e-cash orders
and shows their status, and shows what the till and the bank know of an
electronic check's EPOID (check-status). Give --data DIR (the token
and, while the merchant runs, its admin address are read from there), or
--admin ADDR and --token-file FILE.`,
		Example: `merchantd order --data ./shop create --amount EUR:3.50 --summary "1 espresso"
merchantd order --data ./shop status ord-3f9a...
merchantd order --data ./shop check-status 1001-1767225600000-42`,
		Flags: admin.Register,
		Sub:   []*cli.Command{createCommand(admin), statusCommand(admin), checkStatusCommand(admin)},
	}
}

func adminCall(ctx context.Context, inv *cli.Invocation, a *cli.AdminFlags, f func(context.Context, pb.MerchantAdminClient) error) error {
	conn, _, err := a.Dial(inv)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return a.Explain(f(ctx, pb.NewMerchantAdminClient(conn)))
}

func createCommand(a *cli.AdminFlags) *cli.Command {
	var (
		amount, summary string
		ttl             time.Duration
		uri             bool
	)
	return &cli.Command{
		Name:  "create",
		Short: "create an order and print its id or payment URI",
		Long: `create makes an order: a payment request for --amount, signed by the
merchant, with the --summary the customer's wallet shows, payable for --ttl.
The summary is one line of UTF-8 text, at most 4096 bytes: no tab, newline
or other control character and no bidi control, which could change what
the wallet's confirmation shows (wallets refuse to pay such an order).
It prints the order id (just the id; with --json an object with the id and
the payment URI). The customer pays it with: wallet pay --merchant ADDR
--order ID.

With --uri it prints the order's payment URI instead: the signed request,
its summary and the merchant's address (see "merchantd serve --help"), to
hand to the customer as a link or a QR code. The customer's wallet pays it
with: wallet pay --uri URI, one round trip fewer, as it need not fetch the
request. A QR code holds about 2,900 bytes; a URI grows by 4 bytes for
every 3 of the summary.`,
		Example: `merchantd order --data ./shop create --amount EUR:3.50 --summary "1 espresso" --ttl 30m
merchantd order --data ./shop create --amount EUR:3.50 --summary "1 espresso" --uri | qrencode -t ansiutf8`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&amount, "amount", "", "`AMOUNT` to charge, e.g. EUR:3.50 (required)")
			fs.StringVar(&summary, "summary", "", "`TEXT` describing the order, shown by the wallet (required)")
			cli.DurationVar(fs, &ttl, "ttl", merchant.DefaultOrderTTL, "how long the order can be paid, a `DURATION` such as 15m, 2h or 1d (at most 30d)")
			fs.BoolVar(&uri, "uri", false, "print the order's payment URI instead of its id")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if amount == "" {
				return cli.Usagef("--amount AMOUNT is required")
			}
			if summary == "" {
				return cli.Usagef("--summary TEXT is required")
			}
			amt, err := cli.ParsePositiveAmount(amount)
			if err != nil {
				return err
			}
			if err := ecash.CheckSummary(summary); err != nil {
				return fmt.Errorf("bad --summary: %w", err)
			}
			if ttl < time.Second || ttl > maxTTL {
				return fmt.Errorf("bad --ttl %s: want 1s to 30d", cli.FormatDuration(ttl))
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.MerchantAdminClient) error {
				resp, err := c.CreateOrder(ctx, &pb.CreateOrderRequest{Amount: amt.String(), Summary: summary, TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return fmt.Errorf("creating the order: %w", err)
				}
				if uri && resp.PaymentUri == "" {
					return fmt.Errorf("order %s was created, but the merchant has no public address to put in a payment URI: restart it with --public-addr", resp.OrderId)
				}
				if !inv.JSON {
					if uri {
						fmt.Fprintln(inv.Stdout, resp.PaymentUri)
					} else {
						fmt.Fprintln(inv.Stdout, resp.OrderId)
					}
					return nil
				}
				st, err := c.OrderStatus(ctx, &pb.OrderStatusRequest{OrderId: resp.OrderId})
				if err != nil {
					return fmt.Errorf("order %s was created, but reading it back failed: %w", resp.OrderId, err)
				}
				return inv.Print(orderJSON(st), nil)
			})
		},
	}
}

func statusCommand(a *cli.AdminFlags) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Args:  "ORDER_ID",
		NArgs: 1,
		Short: "show an order: paid, unpaid or expired",
		Long: `status shows an order's state (unpaid, paid or expired), amount, summary and
expiry. With --json it also gives the bank's signed deposit receipt in hex
once the order is paid. For an unpaid order that a wallet tried to pay, the
merchant first asks the bank whether the payment went through (it may have
missed the answer); it fails if the bank cannot be asked.`,
		Example: `merchantd order --data ./shop status ord-3f9a...
merchantd order --data ./shop status --json ord-3f9a...`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			id := inv.Args[0]
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.MerchantAdminClient) error {
				resp, err := c.OrderStatus(ctx, &pb.OrderStatusRequest{OrderId: id})
				if err != nil {
					return fmt.Errorf("order %s: %w", id, err)
				}
				expires := time.UnixMilli(resp.ExpiresUnixMs)
				return inv.Print(orderJSON(resp), func(w io.Writer) {
					t := cli.NewTable(w)
					t.Row("order:", resp.OrderId)
					t.Row("status:", resp.Status)
					t.Row("amount:", resp.Amount)
					t.Row("summary:", cli.Shown(resp.Summary))
					t.Row("expires:", fmt.Sprintf("%s (%s)", cli.FormatTime(expires), cli.Until(expires, time.Now())))
					if len(resp.Receipt) > 0 {
						t.Row("receipt:", fmt.Sprintf("signed by the bank, %d bytes (--json shows it)", len(resp.Receipt)))
					} else if resp.PaymentUri != "" {
						t.Row("payment URI:", resp.PaymentUri)
					}
					t.Flush()
				})
			})
		},
	}
}

type orderOut struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	Amount  string `json:"amount"`
	Summary string `json:"summary"`
	Expires string `json:"expires"`
	Receipt string `json:"receipt,omitempty"` // hex of the bank's signed deposit receipt
	URI     string `json:"payment_uri,omitempty"`
}

func orderJSON(r *pb.OrderStatusResponse) orderOut {
	return orderOut{
		OrderID: r.OrderId, Status: r.Status, Amount: r.Amount, Summary: r.Summary,
		Expires: time.UnixMilli(r.ExpiresUnixMs).UTC().Format(time.RFC3339), Receipt: hex.EncodeToString(r.Receipt),
		URI: r.PaymentUri,
	}
}

// otherPostings is what the statement's closing balance holds beyond its
// opening balance, the deposits matched to receipts and the payouts:
// checks, refunds and their fees, deposits without a receipt here. Signed
// ("-EUR:0.50" for a net debit), so that the report adds up.
func otherPostings(r *pb.VerifySettlementResponse) (string, error) {
	var v [4]ecash.Amount
	for i, s := range []string{r.Opening, r.Closing, r.Deposited, r.PaidOut} {
		a, err := ecash.ParseAmount(s)
		if err != nil {
			return "", fmt.Errorf("the merchant's settlement report: %w", err)
		}
		v[i] = a
	}
	// Amounts are at most 2^53 − 1 minor units: the sum fits in an int64.
	net := int64(v[1].Value) - int64(v[0].Value) - int64(v[2].Value) + int64(v[3].Value)
	sign := ""
	if net < 0 {
		sign, net = "-", -net
	}
	return sign + ecash.Amount{Currency: v[1].Currency, Value: uint64(net)}.String(), nil
}

func settlementCommand() *cli.Command {
	admin := &cli.AdminFlags{What: "merchant", DefaultAddr: "127.0.0.1:7544"}
	return &cli.Command{
		Name:  "settlement",
		Short: "check the bank's settlement statement against your receipts",
		Args:  "FILE",
		NArgs: 1,
		Long: `settlement verifies the bank's signed statement of your account (FILE, as
"bankd admin payout --statement" writes it) on the running merchant: the
bank's signature, that it is your account, and that every payment the
merchant holds a receipt for in the period is on it for exactly its amount.
It prints the period's deposits and payouts, the other postings (checks and
goods paid by check, refunds and their fees, deposits without a receipt
here), and the opening and closing balances, which these add up to. Exit
status 1 if the statement and the receipts disagree.`,
		Example: `merchantd settlement --data ./shop shop-2026-11.stmt`,
		Flags:   admin.Register,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			raw, err := os.ReadFile(inv.Args[0])
			if err != nil {
				return err
			}
			return adminCall(ctx, inv, admin, func(ctx context.Context, c pb.MerchantAdminClient) error {
				r, err := c.VerifySettlement(ctx, &pb.VerifySettlementRequest{Statement: raw})
				if err := notChecked("the statement", err); err != nil {
					return err
				}
				if err != nil {
					return fmt.Errorf("the statement does not check out: %w", err)
				}
				other, err := otherPostings(r)
				if err != nil {
					return err
				}
				out := struct {
					Account   uint64   `json:"account"`
					From      string   `json:"from"`
					To        string   `json:"to"`
					Deposits  int32    `json:"deposits_matched"`
					Deposited string   `json:"deposited"`
					PaidOut   string   `json:"paid_out"`
					Other     string   `json:"other_postings"`
					Opening   string   `json:"opening"`
					Closing   string   `json:"closing"`
					Unmatched []string `json:"unmatched_payments"`
					Late      []string `json:"late_orders"`
					Unsettled []string `json:"unsettled_orders"`
				}{r.Account, time.UnixMilli(r.FromUnixMs).UTC().Format(time.RFC3339), time.UnixMilli(r.ToUnixMs).UTC().Format(time.RFC3339),
					r.Deposits, r.Deposited, r.PaidOut, other, r.Opening, r.Closing, append([]string{}, r.UnmatchedPayments...), append([]string{}, r.LateOrders...),
					append([]string{}, r.UnsettledOrders...)}
				if err := inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "statement of account %d, %s to %s: verified\n", out.Account, out.From, out.To)
					fmt.Fprintf(w, "  %s matched to receipts, %s; paid out %s\n", cli.Plural(int(out.Deposits), "deposit"), out.Deposited, out.PaidOut)
					fmt.Fprintf(w, "  other postings %s (checks, refunds and their fees, deposits without a receipt here)\n", out.Other)
					fmt.Fprintf(w, "  opening %s, closing %s\n", out.Opening, out.Closing)
					if len(out.Unmatched) > 0 {
						fmt.Fprintf(w, "  %s without a receipt here (another installation?)\n", cli.Plural(len(out.Unmatched), "deposit"))
					}
					if len(out.Late) > 0 {
						fmt.Fprintf(w, "  %s made just before the end, posted after it (on the next statement): %s\n", cli.Plural(len(out.Late), "deposit"), strings.Join(out.Late, ", "))
					}
				}); err != nil {
					return err
				}
				if len(out.Unsettled) > 0 {
					return fmt.Errorf("%s in the periods checked so far on no statement checked (%s): check the statement of the period that holds them; if none does, the bank left them out", cli.Plural(len(out.Unsettled), "deposit"), strings.Join(out.Unsettled, ", "))
				}
				return nil
			})
		},
	}
}

func refundCommand() *cli.Command {
	admin := &cli.AdminFlags{What: "merchant", DefaultAddr: "127.0.0.1:7544"}
	var (
		order, amount string
		refundID      uint64
	)
	return &cli.Command{
		Name:  "refund",
		Short: "give back part or all of a paid order",
		Long: `refund has the running merchant sign a refund of --amount of the paid
order --order and send it to the bank. The bank debits your account and
gives the value back to the coins the customer paid with; their wallet
collects it with "wallet refunds". Several partial refunds of one order are
fine, up to what it paid; each has a number (1, 2, ...), which refund
prints. The bank refuses a refund of money already paid out to you
("bankd admin payout").

The refund is persisted before it is sent; if the bank's answer is lost,
the next refund of the order completes it first (the bank applies it once)
and, if it is of the same amount, reports it as this one; if not, it says
so and refunds nothing more: run the command again for the further refund.
But if this command's own answer from merchantd is lost, the refund may
have been made and recorded, and the same command without --refund-id
makes another. Give --refund-id N, the refund's number, to make repeating
always safe: an existing refund N of the same amount is reported again, N
one past the order's refunds makes it, and anything else is refused.

The bank refuses a refund dated more than 5 minutes ahead of its clock: a
new one is then not made (set this computer's clock and run again); one
pending from before stays pending, and is sent again by the order's next
refund. Any refusal of a pending refund leaves it pending, since the send
whose answer was lost may still be committing at the bank: it is sent
again within an hour of its date, then looked for among the bank's refund
receipts, and dropped if the bank has none two hours and ten minutes after
its date (run the command again to refund). A refund refused the first
time is not made.`,
		Example: `merchantd refund --data ./shop --order ord-3f9a... --amount EUR:1.50
merchantd refund --data ./shop --order ord-3f9a... --amount EUR:0.50 --refund-id 2`,
		Flags: func(fs *flag.FlagSet) {
			admin.Register(fs)
			fs.StringVar(&order, "order", "", "the paid order's `ID` (required)")
			fs.StringVar(&amount, "amount", "", "the `AMOUNT` to give back, e.g. EUR:1.50 (required)")
			fs.Uint64Var(&refundID, "refund-id", 0, "the refund's number `N` among the order's (1 for the first): safe to repeat (default: the next, or the one pending)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if order == "" || amount == "" {
				return cli.Usagef("--order and --amount are required")
			}
			amt, err := cli.ParsePositiveAmount(amount)
			if err != nil {
				return err
			}
			return adminCall(ctx, inv, admin, func(ctx context.Context, c pb.MerchantAdminClient) error {
				r, err := c.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: amt.String(), RefundId: refundID})
				if err != nil {
					return refundError(err)
				}
				rc, err := ecash.DecodeRefundReceipt(r.Receipt)
				if err != nil {
					return err
				}
				out := struct {
					Order    string `json:"order"`
					ID       uint64 `json:"refund_id"`
					Refunded string `json:"refunded"`
					Coins    int    `json:"coins"`
					Total    string `json:"total_refunded"`
					Refund   string `json:"refund_hash"`
				}{order, r.RefundId, rc.Total.String(), len(rc.Coins), r.TotalRefunded, rc.RefundHash.String()}
				return inv.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "refund %d: refunded %s of order %s to %s (%s refunded in all)\n", out.ID, out.Refunded, order, cli.Plural(out.Coins, "coin"), out.Total)
				})
			})
		},
	}
}

func verifyLogCommand() *cli.Command {
	admin := &cli.AdminFlags{What: "merchant", DefaultAddr: "127.0.0.1:7544"}
	var cf cli.CheckpointOut
	return &cli.Command{
		Name:  "verify-log",
		Short: "check that the bank's audit log records your deposits and payment orders",
		Long: `verify-log has the running merchant fetch the bank's signed audit-log
checkpoint, check it is consistent with every checkpoint the merchant has
seen (a bank that shows two histories is caught), and verify that each
deposit not yet checked is in the log with exactly the coins of its receipt,
and each payment order (NetBill goods or check) the bank decided is in the
log at the index the bank gave, with the EPOID, EPO hash, price and decision
of its receipt, crediting this merchant.

With --checkpoint-out FILE it writes the signed checkpoint the merchant
now holds, exactly as the bank signed it, for an auditor: "audit log
--from FILE" checks that the log the bank serves the auditor extends it,
and checks its keyset line against the log. It is written after the
checks, also when the log does not match (the checkpoint is then
evidence); an existing FILE is kept unless --overwrite.

It reports the entries verified and those waiting, checked at a later
run: deposits and payment orders the checkpoint does not hold that were
answered while the command ran, or that the bank dated before its log
began or less than 5 minutes (the clock skew allowed) after (a deposit
counts as answered no earlier than its order's creation less the skew, a
payment order than its EPOID's time less the skew, whatever the receipt
says); and whether the merchant adopted a newer key set the checkpoint
names than the bank served (logged, and following the one held). With
--json: log_size, root (hex), verified, waiting, checkpoint_file and
adopted_key_set, as wallet verify-log prints them (docs/AUDIT.md). Exit
status 1 on a forked log, a
mismatch, or a deposit or payment order answered before the checkpoint
was fetched, and after the log began, that it does not hold.`,
		Example: `merchantd verify-log --data ./shop
merchantd verify-log --data ./shop --checkpoint-out shop.checkpoint`,
		Flags: func(fs *flag.FlagSet) {
			admin.Register(fs)
			cf.Register(fs, "merchant")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if err := cf.Check(); err != nil {
				return err
			}
			return adminCall(ctx, inv, admin, func(ctx context.Context, c pb.MerchantAdminClient) error {
				r, err := c.VerifyLog(ctx, &pb.VerifyLogRequest{})
				if err := notChecked("the audit log", err); err != nil {
					return err
				}
				if err != nil {
					err = fmt.Errorf("the audit log does not check out: %w", err)
					if cf.Path == "" {
						return err
					}
					// A mismatch: the checkpoint held is its evidence,
					// written as the wallet does (never after a fork).
					held := mismatchReport(err)
					switch {
					case held != nil:
						if werr := cf.Write(held.Checkpoint); werr != nil {
							return errors.Join(err, werr)
						}
						inv.Notef("the signed checkpoint is in %s", cf.Path)
					case status.Code(err) == codes.FailedPrecondition:
						inv.Notef("no checkpoint written to %s: the merchant holds none this check vouches for", cf.Path)
					}
					return err
				}
				if cf.Path != "" {
					if len(r.Checkpoint) == 0 {
						return errors.New("--checkpoint-out: the merchant sent no checkpoint (is it older than this command?)")
					}
					if err := cf.Write(r.Checkpoint); err != nil {
						return err
					}
				}
				res := cli.LogCheck{LogSize: r.LogSize, Root: hex.EncodeToString(r.Root), Verified: int(r.Verified), Waiting: int(r.Waiting), CheckpointFile: cf.Path,
					AdoptedKeySet: r.AdoptedKeySet}
				return inv.Print(res, func(w io.Writer) {
					fmt.Fprintf(w, "log of %s, consistent with every checkpoint seen; %s verified, %d waiting\n", cli.PluralOf(int(r.LogSize), "entry", "entries"), cli.PluralOf(int(r.Verified), "deposit or payment order", "deposits and payment orders"), r.Waiting)
					if r.AdoptedKeySet {
						fmt.Fprintln(w, cli.AdoptedKeySetNote)
					}
					if cf.Path != "" {
						fmt.Fprintf(w, "signed checkpoint written to %s\n", cf.Path)
					}
				})
			})
		},
	}
}

// mismatchReport is the report a merchant sends with a mismatch (the
// status's detail): the checkpoint it holds; nil if there is none.
func mismatchReport(err error) *pb.VerifyLogResponse {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return nil
	}
	for _, d := range st.Details() {
		if r, ok := d.(*pb.VerifyLogResponse); ok && len(r.Checkpoint) > 0 {
			return r
		}
	}
	return nil
}

// notChecked is the error of a check that did not run: err says the
// merchant is not running, or did not reach the bank (Unavailable,
// DeadlineExceeded), which is no finding against the bank, and must not
// read as "does not check out". Nil for any other err.
func notChecked(what string, err error) error {
	if code := status.Code(err); code == codes.Unavailable || code == codes.DeadlineExceeded {
		return fmt.Errorf("%s was not checked: %w", what, err)
	}
	return nil
}

// refundError says what a failed refund command means: a refusal made
// nothing, but a refund merchantd keeps pending (or an answer lost) may
// yet be made, and "refused" would invite refunding some other way.
func refundError(err error) error {
	if bank.Definitive(err) {
		return fmt.Errorf("refund refused: %w", err)
	}
	return fmt.Errorf("refund not settled yet, it may still be made: %w\nrun the same command again later (give --refund-id to make repeating safe)", err)
}
