package walletcmd

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// The checkbook commands: buying goods from a merchant's till and writing
// checks, paid from the bank account by signed payment orders (NetBill).

// merchantFlags are --merchant ADDR and how to trust it.
type merchantFlags struct {
	addr string
	tls  cli.TLSFlags
}

func newMerchantFlags() *merchantFlags {
	return &merchantFlags{tls: cli.TLSFlags{Prefix: "merchant-", What: "merchant"}}
}

func (m *merchantFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.addr, "merchant", "", "the merchant's public `ADDR` (required)")
	m.tls.Register(fs)
}

// dial checks the flags and connects to the merchant.
func (m *merchantFlags) dial() (*grpc.ClientConn, error) {
	if err := cli.CheckAddr("merchant", m.addr); err != nil {
		return nil, err
	}
	cfg, err := m.tls.Config(m.addr)
	if err != nil {
		return nil, err
	}
	return transport.Dial(m.addr, cfg, m.tls.CertHint())
}

// purchaseOut is a payment order as the commands print it.
type purchaseOut struct {
	EPOID           string `json:"epoid"`
	Kind            string `json:"kind"`
	Product         string `json:"product,omitempty"`
	Price           string `json:"price"`
	MerchantAccount uint64 `json:"merchant_account"`
	Status          string `json:"status"`
	Reason          string `json:"reason,omitempty"`
	DecidedAt       string `json:"decided_at,omitempty"`
	Balance         string `json:"balance,omitempty"` // from the bank's customer-only block
	LowBalance      bool   `json:"low_balance,omitempty"`
	Out             string `json:"out,omitempty"`
	Bytes           int    `json:"bytes,omitempty"`
	Receipt         string `json:"receipt,omitempty"` // hex of the bank's signed receipt
}

func purchaseJSON(p *wallet.Purchase) purchaseOut {
	out := purchaseOut{
		EPOID: p.EPOID.String(), Kind: p.Kind.String(), Product: p.ProductID, Price: p.Price.String(),
		MerchantAccount: p.MerchantAccount, Status: p.State,
	}
	if p.Receipt != nil {
		out.Reason = p.Receipt.Reason
		out.DecidedAt = p.Receipt.DecidedAt.UTC().Format(time.RFC3339Nano)
		out.Receipt = hex.EncodeToString(p.Receipt.Encode())
	}
	if p.Block != nil {
		out.Balance, out.LowBalance = p.Block.NewBalance.String(), p.Block.LowBalance
	}
	return out
}

// printPurchase prints a payment order as a table (or JSON).
func printPurchase(inv *cli.Invocation, p *wallet.Purchase, out purchaseOut) error {
	return inv.Print(out, func(w io.Writer) {
		t := cli.NewTable(w)
		t.Row("epoid:", out.EPOID)
		if p.Kind == echeck.KindGoods {
			t.Row("product:", out.Product)
		} else {
			t.Row("check to:", fmt.Sprintf("merchant account %d", out.MerchantAccount))
			if out.Product != "" {
				t.Row("reference:", out.Product)
			}
		}
		t.Row("price:", out.Price)
		status := out.Status
		switch {
		case p.Receipt != nil && out.Reason != "":
			status += " (" + out.Reason + "; signed by the bank)"
		case p.Receipt != nil:
			status += " (signed by the bank)"
		}
		t.Row("status:", status)
		if out.Out != "" {
			t.Row("goods:", fmt.Sprintf("%d bytes written to %s", out.Bytes, out.Out))
		}
		if out.Balance != "" {
			b := out.Balance
			if out.LowBalance {
				b += " (low)"
			}
			t.Row("balance:", b)
		}
		t.Flush()
	})
}

// checkOut refuses an --out the goods could not be written to, before
// anything is paid.
func checkOut(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("--out %s is a directory; give a file name", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--out %s: directory %s does not exist", path, dir)
	}
	return nil
}

// writeGoods writes the decrypted goods to --out.
func writeGoods(path string, p *wallet.Purchase, out *purchaseOut) error {
	if err := bank.WriteFileAtomic(path, p.Goods, 0o600); err != nil {
		return fmt.Errorf("paid, but writing the goods failed (%v); they are kept in the wallet: run 'wallet check-status %s --out FILE'", err, p.EPOID)
	}
	out.Out, out.Bytes = path, len(p.Goods)
	return nil
}

// checkbookError explains what a failed payment order means for the user.
func checkbookError(inv *cli.Invocation, p *wallet.Purchase, err error) error {
	var de *wallet.DeclinedError
	var mf *wallet.MerchantFaultError
	switch {
	case errors.As(err, &de):
		if inv.JSON && p != nil {
			inv.Print(purchaseJSON(p), nil)
		}
		return fmt.Errorf("the bank declined payment order %s: %s; nothing was paid", de.EPOID, de.Reason)
	case errors.As(err, &mf):
		if inv.JSON && p != nil {
			inv.Print(purchaseJSON(p), nil)
		}
		return fmt.Errorf("payment order %s was charged, but the key the merchant gave does not open the goods: %s. The wallet keeps the signed EPO, the bank's receipt and the ciphertext: evidence for a refund", mf.EPOID, mf.Verdict)
	case errors.Is(err, wallet.ErrDeclined):
		return errors.New("purchase cancelled; nothing was paid")
	case errors.Is(err, wallet.ErrPending) && p != nil:
		return fmt.Errorf("payment order %s was sent but its outcome is not known yet (%v). It is saved in the wallet: run 'wallet check-status %s' (with --out FILE for goods) to ask the bank, which also releases the key if you were charged", p.EPOID, err, p.EPOID)
	}
	return err
}

func buyCommand(g *globals) *cli.Command {
	var (
		product, maxPrice, memo, out, transcript string
		yes                                      bool
	)
	mf := newMerchantFlags()
	return &cli.Command{
		Name:  "buy",
		Short: "buy goods from a merchant's till, paid from your bank account",
		Long: `buy buys product --product from the merchant at --merchant by electronic
check (NetBill), paid from your bank account, not with coins. It runs all
eight steps: it asks for a price (your account key is your identity), checks
the merchant's signed quote (and that it is at most --max-price), shows it
(product, price, the merchant's account and key) and asks "Buy? [y/N]",
receives the goods encrypted under a one-time key and checks their hash,
signs a payment order whose payment instructions only the bank can read, and
saves it with the encrypted goods before sending it. The merchant endorses
it and the bank decides; the wallet checks the bank's signed receipt and
the key against the merchant's commitment, decrypts the goods and writes
them to --out. It prints the order's EPOID, the price, the bank's decision
and your account's new balance, as the bank reports it to you alone (in
--json: balance, and low_balance true when it is under 1000 minor units
(10.00), the bank's warning level).

If the merchant never answers, the wallet asks the bank itself. If the
outcome is still unknown, the order is saved: "wallet check-status EPOID
--out FILE" gets the key from the bank later, even if the merchant is gone.
A decline is signed by the bank and shows its reason; nothing is paid.

The price charged is the quote's, which the merchant signs; the list "wallet
products" prints is not signed and can differ. Without a terminal on stdin,
buy refuses unless --yes (buy at the quoted price) or --max-price AMOUNT (pay
at most AMOUNT) is given; on a terminal it asks even with --max-price.`,
		Example: `wallet buy --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt --product song-1 --out song.ogg
wallet buy --merchant shop.example:7543 --merchant-pin 9a0b...77 --product film --max-price EUR:5.00 --out film.mkv --json
wallet buy --merchant shop.example:7543 --merchant-pin 9a0b...77 --product film --yes --out film.mkv`,
		Flags: func(fs *flag.FlagSet) {
			mf.register(fs)
			fs.StringVar(&product, "product", "", "`ID` of the product to buy (required; see 'wallet products')")
			fs.StringVar(&maxPrice, "max-price", "", "the most you pay, an `AMOUNT` such as EUR:1.00; a dearer quote is refused before anything is signed")
			fs.BoolVar(&yes, "yes", false, "buy at the quoted price without asking")
			fs.StringVar(&memo, "memo", "", "`TEXT` for your statement; only the bank reads it")
			fs.StringVar(&out, "out", "", "`FILE` to write the decrypted goods to (required)")
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if product == "" {
				return cli.Usagef("--product ID is required")
			}
			if out == "" {
				return cli.Usagef("--out FILE is required")
			}
			if len(memo) > echeck.MaxMemoLen {
				return fmt.Errorf("bad --memo: at most %d bytes", echeck.MaxMemoLen)
			}
			var max *ecash.Amount
			if maxPrice != "" {
				a, err := cli.ParsePositiveAmount(maxPrice)
				if err != nil {
					return fmt.Errorf("bad --max-price: %w", err)
				}
				max = &a
			}
			if err := checkOut(out); err != nil {
				return err
			}
			if !yes && max == nil && !inv.StdinTerminal {
				return errors.New("stdin is not a terminal, so the price cannot be confirmed: pass --yes to buy at the merchant's quoted price, or --max-price AMOUNT to pay at most AMOUNT")
			}
			mconn, err := mf.dial()
			if err != nil {
				return err
			}
			defer mconn.Close()
			return withConn(g, transcript, func(w *wallet.Wallet, bconn *grpc.ClientConn) error {
				if _, err := w.Account(); err != nil {
					return err
				}
				if ks, err := w.KeySet(); err == nil && max != nil && max.Currency != ks.Currency {
					return fmt.Errorf("bad --max-price: the bank holds %s, not %s", ks.Currency, max.Currency)
				}
				confirm := func(q *echeck.Quote) error {
					printQuote(inv.PromptOut(), mf.addr, q)
					// Without a terminal, only --yes or --max-price gets
					// here, and the wallet has held the price to the latter.
					if yes || !inv.StdinTerminal || inv.Agree("Buy?") {
						return nil
					}
					return wallet.ErrDeclined
				}
				p, err := w.Buy(ctx, pb.NewBankClient(bconn), pb.NewMerchantClient(mconn), product, max, memo, confirm)
				if err != nil {
					return checkbookError(inv, p, err)
				}
				o := purchaseJSON(p)
				if err := writeGoods(out, p, &o); err != nil {
					return err
				}
				return printPurchase(inv, p, o)
			})
		},
	}
}

// printQuote shows the merchant's verified quote before buying: its price is
// the one charged. The product id is the merchant's text, so it is escaped.
func printQuote(w io.Writer, merchantAddr string, q *echeck.Quote) {
	fmt.Fprintf(w, "Quote (signature verified):\n")
	t := cli.NewTable(w)
	t.Row("  product:", cli.Shown(q.ProductID))
	t.Row("  price:", q.Price.String())
	t.Row("  merchant address:", merchantAddr)
	t.Row("  merchant account:", q.MerchantAccount)
	t.Row("  merchant key:", hex.EncodeToString(q.MerchantPub))
	t.Row("  expires:", fmt.Sprintf("%s (%s)", cli.FormatTime(q.ExpiresAt), cli.Until(q.ExpiresAt, time.Now())))
	t.Flush()
}

func checkStatusCommand(g *globals) *cli.Command {
	var out string
	return &cli.Command{
		Name:  "check-status",
		Args:  "EPOID",
		NArgs: 1,
		Short: "ask the bank for the outcome of a payment order (and the goods' key)",
		Long: `check-status asks the bank directly, with a query signed by your account key,
what it decided on payment order EPOID (printed by buy and write-check, or
listed by "wallet purchases"). The bank answers with the same signed receipt
the merchant should have forwarded; for approved goods it holds the key,
which the wallet checks against the merchant's commitment and uses to decrypt
the goods it saved: --out FILE writes them. This is how you get what you paid
for when the merchant never delivered the key.

An order the bank has not seen stays "pending" until it expires; after that
it is "expired" and can no longer be charged.`,
		Example: `wallet check-status 1001-1767225600000-42 --out song.ogg
wallet check-status --json 1001-1767225600000-42`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "write the decrypted goods to `FILE` (approved goods only)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			id, err := echeck.ParseEPOID(inv.Args[0])
			if err != nil {
				return fmt.Errorf("bad EPOID %q: want MERCHANT-MILLISECONDS-SERIAL as buy printed it", inv.Args[0])
			}
			if out != "" {
				if err := checkOut(out); err != nil {
					return err
				}
			}
			return withConn(g, "", func(w *wallet.Wallet, bconn *grpc.ClientConn) error {
				p, err := w.CheckStatus(ctx, pb.NewBankClient(bconn), id)
				var de *wallet.DeclinedError
				switch {
				case errors.Is(err, wallet.ErrNoPurchase):
					return fmt.Errorf("payment order %s is not in this wallet (see 'wallet purchases')", id)
				case errors.Is(err, wallet.ErrPending) && p != nil:
					inv.Notef("the bank has no decision on %s yet; it can be charged until %s", id, cli.FormatTime(p.ExpiresAt))
				case errors.As(err, &de) && p != nil:
				case err != nil:
					return checkbookError(inv, p, err)
				}
				o := purchaseJSON(p)
				switch {
				case out != "" && p.Goods != nil:
					if err := writeGoods(out, p, &o); err != nil {
						return err
					}
				case out != "":
					inv.Notef("no goods to write: the order is %s", p.State)
				case p.Goods != nil:
					inv.Notef("the key was released and the goods decrypt: give --out FILE to write them")
				}
				return printPurchase(inv, p, o)
			})
		},
	}
}

func writeCheckCommand(g *globals) *cli.Command {
	var amount, memo, transcript string
	mf := newMerchantFlags()
	return &cli.Command{
		Name:  "write-check",
		Short: "pay an amount to a merchant by a signed check",
		Long: `write-check pays --amount from your bank account to the merchant at
--merchant by a plain signed check: a payment order without goods, signed by
your account key, with its payment instructions (your account, --memo)
sealed to the bank. The merchant endorses it and deposits it; the wallet
checks the bank's signed receipt and prints your account's new balance (in
--json: balance, and low_balance true under 10.00, as for buy). The check is
saved before it is sent: if the answer is lost, "wallet check-status EPOID"
asks the bank.`,
		Example: `wallet write-check --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt --amount EUR:5.00 --memo "invoice 17"`,
		Flags: func(fs *flag.FlagSet) {
			mf.register(fs)
			fs.StringVar(&amount, "amount", "", "`AMOUNT` to pay, e.g. EUR:5.00 (required)")
			fs.StringVar(&memo, "memo", "", "`TEXT` for your statement; only the bank reads it")
			fs.StringVar(&transcript, "transcript", "", "append the protocol messages to `FILE` (JSON lines)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if amount == "" {
				return cli.Usagef("--amount AMOUNT is required")
			}
			amt, err := cli.ParsePositiveAmount(amount)
			if err != nil {
				return err
			}
			if len(memo) > echeck.MaxMemoLen {
				return fmt.Errorf("bad --memo: at most %d bytes", echeck.MaxMemoLen)
			}
			mconn, err := mf.dial()
			if err != nil {
				return err
			}
			defer mconn.Close()
			return withBank(g, transcript, amt, func(w *wallet.Wallet, bank pb.BankClient) error {
				if _, err := w.Account(); err != nil {
					return err
				}
				p, err := w.WriteCheck(ctx, bank, pb.NewMerchantClient(mconn), amt, memo)
				if err != nil {
					return checkbookError(inv, p, err)
				}
				return printPurchase(inv, p, purchaseJSON(p))
			})
		},
	}
}

func productsCommand() *cli.Command {
	mf := newMerchantFlags()
	return &cli.Command{
		Name:  "products",
		Short: "list what a merchant's till sells",
		Long: `products lists the catalogue of the merchant at --merchant: each product's
id (for "wallet buy --product"), price, size and description, and the
merchant's account at the bank. It needs no wallet.`,
		Example: `wallet products --merchant 127.0.0.1:7543 --merchant-ca ./shop/tls.crt`,
		Flags:   mf.register,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			conn, err := mf.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			resp, err := pb.NewMerchantClient(conn).ListProducts(ctx, &pb.ListProductsRequest{})
			if err != nil {
				return fmt.Errorf("listing the products of %s: %w", mf.addr, err)
			}
			return printProducts(inv, resp)
		},
	}
}

type productOut struct {
	ID          string `json:"id"`
	Price       string `json:"price"`
	Size        uint64 `json:"size"`
	Description string `json:"description,omitempty"`
}

// printProducts prints a till's catalogue.
func printProducts(inv *cli.Invocation, resp *pb.ListProductsResponse) error {
	out := struct {
		MerchantAccount uint64       `json:"merchant_account"`
		MerchantKey     string       `json:"merchant_key"`
		Products        []productOut `json:"products"`
	}{resp.MerchantAccount, hex.EncodeToString(resp.MerchantKey), []productOut{}}
	for _, p := range resp.Products {
		out.Products = append(out.Products, productOut{p.Id, p.Price, p.Size, p.Description})
	}
	return inv.Print(out, func(w io.Writer) {
		fmt.Fprintf(w, "merchant account %d, %s\n", out.MerchantAccount, cli.Plural(len(out.Products), "product"))
		if len(out.Products) == 0 {
			return
		}
		t := cli.NewTable(w)
		t.Row("ID", "PRICE", "SIZE", "DESCRIPTION")
		for _, p := range out.Products {
			t.Row(cli.Shown(p.ID), cli.Shown(p.Price), p.Size, cli.Shown(p.Description))
		}
		t.Flush()
	})
}

func purchasesCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "purchases",
		Short: "list the payment orders (purchases and checks) in the wallet",
		Long: `purchases lists every payment order the wallet has signed: its EPOID, kind,
product, price and what is known of it (pending, approved, declined,
expired). It works offline; "wallet check-status EPOID" asks the bank.`,
		Example: `wallet purchases`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			w, _, err := open(g, wallet.Options{})
			if err != nil {
				return err
			}
			defer w.Close()
			ps, err := w.Purchases()
			if err != nil {
				return err
			}
			out := []purchaseOut{}
			for _, p := range ps {
				o := purchaseJSON(p)
				o.Receipt = ""
				out = append(out, o)
			}
			return inv.Print(out, func(wr io.Writer) {
				if len(out) == 0 {
					fmt.Fprintln(wr, "no payment orders")
					return
				}
				t := cli.NewTable(wr)
				t.Row("EPOID", "KIND", "PRODUCT", "PRICE", "STATUS")
				for _, o := range out {
					t.Row(o.EPOID, o.Kind, o.Product, o.Price, o.Status)
				}
				t.Flush()
			})
		},
	}
}

func statementCommand(g *globals) *cli.Command {
	var period cli.Period
	return &cli.Command{
		Name:  "statement",
		Short: "show your bank account's signed statement",
		Long: `statement asks the bank for your account's statement over [--from, --to),
with a request signed by your account key, and checks the bank's signature
and the running balances. Each line shows the posting's time, its EPOID (for
payment orders), product or kind, amount, the other account, your memo and
the balance after it. The other account is a customer's or merchant's
number, or one of the bank's own: "funding" for money from or to outside
the bank (credits, payouts), "e-cash" for coins withdrawn or returned,
"fees" for fees. In --json a line's counterparty is that account's number
(1, 2 and 3 for the bank's own), absent on a merchant's e-check posting,
whose customer is sealed to the bank; its product is the goods' product id
or a check's reference, or for other postings their kind (credit, withdraw,
deposit, payout, refund, fee). Times are RFC 3339
(2026-03-01T12:00:00Z) or dates (2026-03-01, midnight UTC). By default the
last 30 days.`,
		Example: `wallet statement
wallet statement --from 2026-03-01 --to 2026-04-01 --json`,
		Flags: period.Register,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			start, end, err := period.Resolve(time.Now())
			if err != nil {
				return err
			}
			return withConn(g, "", func(w *wallet.Wallet, bconn *grpc.ClientConn) error {
				st, err := w.Statement(ctx, pb.NewBankClient(bconn), start, end)
				if err != nil {
					return err
				}
				return printStatement(inv, st)
			})
		},
	}
}

// money renders signed minor units in a currency.
func money(cur string, v int64) string {
	if v < 0 {
		return "-" + ecash.Amount{Currency: cur, Value: uint64(-v)}.String()
	}
	return ecash.Amount{Currency: cur, Value: uint64(v)}.String()
}

// counterparty names the other account of a statement line: a customer's
// or merchant's number, or the role of one of the bank's own accounts.
func counterparty(id uint64) string {
	switch {
	case id == 0:
		return "-"
	case id == bank.AccountFunding:
		return "funding"
	case id == bank.AccountOutstanding:
		return "e-cash"
	case id == bank.AccountFees:
		return "fees"
	case bank.IsSystem(id):
		return "-"
	}
	return fmt.Sprint(id)
}

type lineOut struct {
	Time         string `json:"time"`
	EPOID        string `json:"epoid,omitempty"`
	Product      string `json:"product,omitempty"`
	Amount       string `json:"amount"`
	Counterparty uint64 `json:"counterparty,omitempty"`
	Memo         string `json:"memo,omitempty"`
	Balance      string `json:"balance"`
}

func printStatement(inv *cli.Invocation, st *echeck.Statement) error {
	out := struct {
		Account   uint64    `json:"account"`
		From      string    `json:"from"`
		To        string    `json:"to"`
		Opening   string    `json:"opening"`
		Closing   string    `json:"closing"`
		Lines     []lineOut `json:"lines"`
		Statement string    `json:"statement"` // hex of the bank's signed statement
	}{
		Account: st.Account, From: st.From.UTC().Format(time.RFC3339Nano), To: st.To.UTC().Format(time.RFC3339Nano),
		Opening: money(st.Currency, st.Opening), Closing: money(st.Currency, st.Closing()), Lines: []lineOut{},
		Statement: hex.EncodeToString(st.Encode()),
	}
	for _, l := range st.Lines {
		o := lineOut{
			Time: l.PostedAt.UTC().Format(time.RFC3339Nano), Product: l.ProductID, Amount: money(st.Currency, l.Amount),
			Counterparty: l.Counterparty, Memo: l.Memo, Balance: money(st.Currency, l.Balance),
		}
		if !l.EPOID.IsZero() {
			o.EPOID = l.EPOID.String()
		}
		out.Lines = append(out.Lines, o)
	}
	return inv.Print(out, func(w io.Writer) {
		t := cli.NewTable(w)
		t.Row("account:", st.Account)
		t.Row("period:", cli.FormatTime(st.From)+" to "+cli.FormatTime(st.To))
		t.Row("opening:", out.Opening)
		t.Row("closing:", out.Closing)
		t.Flush()
		if len(out.Lines) == 0 {
			return
		}
		fmt.Fprintln(w)
		t = cli.NewTable(w)
		t.Row("TIME", "EPOID", "PRODUCT", "AMOUNT", "ACCOUNT", "BALANCE", "MEMO")
		for i, l := range out.Lines {
			epoid := l.EPOID
			if epoid == "" {
				epoid = "-"
			}
			cp := counterparty(l.Counterparty)
			product := strings.TrimSpace(l.Product)
			if product == "" {
				product = "-"
			}
			t.Row(cli.FormatTime(st.Lines[i].PostedAt), epoid, product, l.Amount, cp, l.Balance, l.Memo)
		}
		t.Flush()
	})
}
