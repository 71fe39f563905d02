package merchantdcmd

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

type productOut struct {
	ID          string `json:"id"`
	Price       string `json:"price"`
	Size        uint64 `json:"size"`
	Description string `json:"description,omitempty"`
	File        string `json:"file,omitempty"`
}

func productsCommand() *cli.Command {
	var catalogue, data string
	return &cli.Command{
		Name:  "products",
		Short: "check a catalogue, or list what a running till sells",
		Long: `products lists a till's products: id, price, size and description.

With --catalogue DIR it reads and checks DIR/catalogue.json offline, as
"merchantd serve --catalogue DIR" would, and reports the first problem
precisely. With --data DIR it asks the merchant running from that data
directory, over its public listener, as wallets see it.

The catalogue is a JSON file beside (or above) the files it sells:

    {"products": [
      {"id": "song-1", "file": "song-1.ogg", "price": "EUR:1.00", "description": "A song"}
    ]}

Ids are 1 to 128 letters, digits and ". - _ :", unique. Files are relative
paths inside DIR, regular files of at most 3 MiB. Prices are positive, in
the bank's currency. Descriptions are at most 1024 bytes. Unknown fields are
refused.`,
		Example: `merchantd products --catalogue ./shop-files
merchantd products --data ./shop --json`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&catalogue, "catalogue", "", "check and list the catalogue in `DIR`")
			fs.StringVar(&data, "data", "", "ask the merchant running from data `DIR`")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if (catalogue == "") == (data == "") {
				return cli.Usagef("give one of --catalogue DIR and --data DIR")
			}
			out := struct {
				MerchantAccount uint64       `json:"merchant_account,omitempty"`
				Products        []productOut `json:"products"`
			}{Products: []productOut{}}
			if catalogue != "" {
				c, err := merchant.LoadCatalogue(catalogue)
				if err != nil {
					return err
				}
				for _, p := range c.Products() {
					out.Products = append(out.Products, productOut{p.ID, p.Price.String(), uint64(p.Size), p.Description, p.Path})
				}
			} else {
				info, err := cli.ReadAddresses(data)
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("no merchant is serving from %s (no %s there)", data, cli.AddressesFile)
				}
				if err != nil {
					return err
				}
				cfg := transport.ClientConfig{CAFile: info.CertFile, Plaintext: !info.TLS}
				conn, err := transport.Dial(info.Addr, cfg, cli.CertHintOption("merchant", "its certificate file "+info.CertFile+", named in "+filepath.Join(data, cli.AddressesFile)))
				if err != nil {
					return err
				}
				defer conn.Close()
				ctx, cancel := context.WithTimeout(ctx, adminTimeout)
				defer cancel()
				resp, err := pb.NewMerchantClient(conn).ListProducts(ctx, &pb.ListProductsRequest{})
				if err != nil {
					return fmt.Errorf("listing the products of %s: %w", info.Addr, err)
				}
				out.MerchantAccount = resp.MerchantAccount
				for _, p := range resp.Products {
					out.Products = append(out.Products, productOut{ID: p.Id, Price: p.Price, Size: p.Size, Description: p.Description})
				}
			}
			return inv.Print(out, func(w io.Writer) {
				if len(out.Products) == 0 {
					fmt.Fprintln(w, "no products")
					return
				}
				t := cli.NewTable(w)
				t.Row("ID", "PRICE", "SIZE", "DESCRIPTION")
				for _, p := range out.Products {
					t.Row(p.ID, p.Price, p.Size, p.Description)
				}
				t.Flush()
			})
		},
	}
}

func checkStatusCommand(a *cli.AdminFlags) *cli.Command {
	return &cli.Command{
		Name:  "check-status",
		Args:  "EPOID",
		NArgs: 1,
		Short: "show what the till and the bank know of an electronic check",
		Long: `check-status shows an electronic check (a sale of goods or a plain check)
by its EPOID: what the till recorded (delivered, endorsed) and the bank's
decision, which the merchant asks for with a status query signed by its
key. A receipt learnt this way is verified and stored: this is how a
merchant that stopped after endorsing learns whether it was paid. With
--json it also gives the bank's signed receipt in hex.

States: delivered (goods sent, no payment order yet), endorsed (sent to the
bank, no answer yet), approved, declined (with the bank's reason), unknown
(neither the till nor the bank knows the EPOID).`,
		Example: `merchantd order --data ./shop check-status 1001-1767225600000-42`,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			id, err := echeck.ParseEPOID(inv.Args[0])
			if err != nil {
				return fmt.Errorf("bad EPOID %q: want MERCHANT-MILLISECONDS-SERIAL", inv.Args[0])
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.MerchantAdminClient) error {
				resp, err := c.SaleStatus(ctx, &pb.SaleStatusRequest{Epoid: id.String()})
				if err != nil {
					return fmt.Errorf("EPOID %s: %w", id, err)
				}
				out := struct {
					EPOID     string `json:"epoid"`
					Kind      string `json:"kind,omitempty"`
					Product   string `json:"product,omitempty"`
					Price     string `json:"price,omitempty"`
					State     string `json:"state"`
					Reason    string `json:"reason,omitempty"`
					FromBank  bool   `json:"from_bank"`
					Delivered string `json:"delivered,omitempty"`
					Receipt   string `json:"receipt,omitempty"`
				}{
					EPOID: resp.Epoid, Kind: resp.Kind, Product: resp.ProductId, Price: resp.Price, State: resp.State,
					Reason: resp.Reason, FromBank: resp.FromBank, Receipt: hex.EncodeToString(resp.Receipt),
				}
				if resp.DeliveredUnixMs != 0 {
					out.Delivered = time.UnixMilli(resp.DeliveredUnixMs).UTC().Format(time.RFC3339Nano)
				}
				return inv.Print(out, func(w io.Writer) {
					t := cli.NewTable(w)
					t.Row("epoid:", out.EPOID)
					if out.Kind != "" {
						t.Row("kind:", out.Kind)
					}
					if out.Product != "" {
						t.Row("product:", out.Product)
					}
					if out.Price != "" {
						t.Row("price:", out.Price)
					}
					state := out.State
					if out.Reason != "" {
						state += " (" + out.Reason + ")"
					}
					t.Row("state:", state)
					if out.FromBank {
						t.Row("bank:", "decided; receipt verified and stored")
					} else {
						t.Row("bank:", "no decision recorded")
					}
					if resp.DeliveredUnixMs != 0 {
						t.Row("delivered:", cli.FormatTime(time.UnixMilli(resp.DeliveredUnixMs)))
					}
					t.Flush()
				})
			})
		},
	}
}
