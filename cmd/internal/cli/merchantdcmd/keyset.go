package merchantdcmd

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/merchant"
)

// keysetHint is what serve says when the key set held stops its start.
func keysetHint(err error, data string) error {
	if !errors.Is(err, merchant.ErrCorruptKeySet) {
		return err
	}
	return fmt.Errorf("%w; \"merchantd keyset --data %s\" shows it, and \"merchantd keyset --data %s --drop\" drops it so that the next start takes the bank's (read \"merchantd keyset --help\" first), or restore the data directory from a backup", err, data, data)
}

func keysetCommand() *cli.Command {
	var (
		data      string
		drop, yes bool
	)
	return &cli.Command{
		Name:  "keyset",
		Short: "show, or drop, the bank's key set the stopped merchant holds",
		Long: `keyset shows the bank's key set the merchant holds in DIR: the one it
starts from, kept so that a restart does not take an older set a bank
replica still serves (whose retired signing key the merchant would trust
again). It reads the store, so the merchant must be stopped.

A held set that no longer decodes under the pinned master key stops
"merchantd serve" ("corrupt key set held"). With --drop, keyset deletes it
(after asking, or with --yes); the bank's master key pinned stays, and the
next start takes the key set the bank serves, signed by that key. The
trade-off: until then the merchant cannot tell the bank's current set from
an older one it signed, so start it against a bank whose replicas all serve
the current set, and run "merchantd verify-log" soon after, which takes a
newer logged set from the audit log. Restoring the data directory from a
backup is the other way out. Drop a set that decodes only if you know why
(docs/OPERATIONS.md, "The bank's keys").`,
		Example: `merchantd keyset --data ./shop
merchantd keyset --data ./shop --drop`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "", "data `DIR` of the stopped merchant (required)")
			fs.BoolVar(&drop, "drop", false, "delete the key set held, so that the next start takes the bank's")
			fs.BoolVar(&yes, "yes", false, "with --drop, drop without asking")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if data == "" {
				return cli.Usagef("--data DIR is required")
			}
			if yes && !drop {
				return cli.Usagef("--yes goes with --drop")
			}
			stopped := "is merchantd serving " + data + "? stop it first"
			held, err := merchant.ReadKeySet(data, nil)
			if err != nil {
				return cli.LockHint(err, stopped)
			}
			out := keysetJSON(held)
			if !drop {
				return inv.Print(out, func(w io.Writer) { printKeyset(w, out) })
			}
			if held.Signed == nil {
				return errors.New("no key set held: nothing to drop (the next start takes the bank's)")
			}
			printKeyset(inv.PromptOut(), out)
			if !yes && !inv.Agree("Drop this key set, so that the next start takes the one the bank serves?") {
				return errors.New("nothing dropped")
			}
			dropped, err := merchant.DropKeySet(data, nil, held.Hash)
			if err != nil {
				return cli.LockHint(err, stopped)
			}
			out = keysetJSON(dropped)
			out.Dropped = true
			return inv.Print(out, func(w io.Writer) {
				fmt.Fprintf(w, "key set %s… dropped; the next start takes the bank's\n", out.SHA256[:16])
			})
		},
	}
}

type keysetOut struct {
	MasterKey  string `json:"bank_master_key,omitempty"` // pinned, hex
	Held       bool   `json:"held"`
	SHA256     string `json:"sha256,omitempty"` // of the signed key set stored
	Size       int    `json:"size,omitempty"`   // its bytes
	Currency   string `json:"currency,omitempty"`
	SigningKey string `json:"signing_key,omitempty"`
	Issued     string `json:"issued,omitempty"`
	Denoms     int    `json:"denominations,omitempty"`
	Error      string `json:"error,omitempty"` // why it does not decode
	Dropped    bool   `json:"dropped,omitempty"`
}

func keysetJSON(h *merchant.HeldKeySet) keysetOut {
	out := keysetOut{MasterKey: hex.EncodeToString(h.Master), Held: h.Signed != nil}
	if h.Signed == nil {
		return out
	}
	out.SHA256, out.Size = h.Hash.String(), len(h.Signed)
	if h.Err != nil {
		out.Error = h.Err.Error()
	}
	if ks := h.KeySet; ks != nil {
		out.Currency, out.SigningKey, out.Denoms = ks.Currency, hex.EncodeToString(ks.SigningPub), len(ks.Denominations)
		out.Issued = ks.IssuedAt.UTC().Format(time.RFC3339)
	}
	return out
}

func printKeyset(w io.Writer, out keysetOut) {
	t := cli.NewTable(w)
	if out.MasterKey != "" {
		t.Row("bank master key:", out.MasterKey+" (pinned)")
	}
	switch {
	case !out.Held:
		t.Row("key set:", "none held (the next start takes the bank's)")
	case out.Error != "":
		t.Row("key set:", fmt.Sprintf("%s, %d bytes: DOES NOT DECODE", out.SHA256, out.Size))
		t.Row("error:", out.Error)
	default:
		t.Row("key set:", fmt.Sprintf("%s, %d bytes", out.SHA256, out.Size))
		t.Row("currency:", out.Currency)
		t.Row("signing key:", out.SigningKey)
		t.Row("issued:", out.Issued)
		t.Row("denominations:", fmt.Sprint(out.Denoms))
	}
	t.Flush()
}
