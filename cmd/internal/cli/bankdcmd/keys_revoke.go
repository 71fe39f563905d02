package bankdcmd

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/config"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

func keysRevokeCommand() *cli.Command {
	var (
		fl    config.Flags
		denom string
	)
	return &cli.Command{
		Name:  "revoke",
		Short: "revoke a denomination key (it may have leaked); holders recoup its coins",
		Long: `revoke marks a denomination key revoked in the key set: once bankd restarts
with it, the bank issues none of its coins and accepts none in payments or
swaps, and wallets recoup them ("wallet recoup"): a withdrawn coin's value
is credited to the account that withdrew it, a coin from a swap is
re-issued as new coins. The key stays in the key file, so the bank can
recompute what it signed; the audit log records the key set that lists the
revocation. Give the denomination id (hex, from "bankd keys show --json")
or a unique prefix of it. With the master key offline, sign the changed key
set before restarting.`,
		Example: `bankd keys revoke --data ./bank --denomination 3f9a0c12`,
		Flags: func(fs *flag.FlagSet) {
			fl.RegisterKeyFile(fs)
			fs.StringVar(&denom, "denomination", "", "the denomination `ID` (hex, or a unique prefix)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			denom, err := denomPrefix(denom)
			if err != nil {
				return err
			}
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			var match []ecash.Denomination
			for _, d := range k.Denoms {
				if strings.HasPrefix(d.ID.String(), denom) {
					match = append(match, d.Denomination)
				}
			}
			if len(match) != 1 {
				return fmt.Errorf("--denomination %s names %d denominations; give more of the id", denom, len(match))
			}
			d := match[0]
			if err := k.Revoke(d.ID, time.Now()); err != nil {
				return err
			}
			if err := saveChanged(inv, k, path, opts, info); err != nil {
				return err
			}
			res := struct {
				KeysFile     string `json:"keys_file"`
				Denomination string `json:"denomination"`
				Value        string `json:"value"`
			}{path, d.ID.String(), d.Value.String()}
			return inv.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "revoked %s (%s)\n", res.Denomination, res.Value)
			})
		},
	}
}

func keysStripCommand() *cli.Command {
	var fl config.Flags
	return &cli.Command{
		Name:  "strip",
		Short: "remove the denomination private keys from bankd's key file (for a signer process)",
		Long: `strip removes every denomination private key from the key file, keeping
their public keys, for a bank whose denominations are signed by a separate
"bankd signer" process: copy the full key file to the signer's data
directory first, then strip bankd's copy, so a compromise of the network
process does not reveal the denomination keys. A stripped bankd refuses to
start without --signer. Key changes (extend, prune, revoke, rotate-signing)
are made on the signer's full key file, then copied and stripped again.`,
		Example: `cp ./bank/keys.json ./signer/keys.json && bankd keys strip --data ./bank`,
		Flags:   fl.RegisterKeyFile,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			k, path, opts, info, err := loadKeys(inv, &fl)
			if err != nil {
				return err
			}
			n := 0
			for _, d := range k.Denoms {
				if d.Private != nil {
					n++
				}
			}
			k.StripDenominationKeys()
			if !info.Encrypted {
				opts.Passphrase = nil
			}
			if err := k.SaveWith(path, opts); err != nil {
				return err
			}
			res := struct {
				KeysFile string `json:"keys_file"`
				Stripped int    `json:"stripped"`
			}{path, n}
			return inv.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "removed %d denomination private keys from %s; start bankd with --signer\n", n, path)
			})
		},
	}
}

// denomPrefix checks a --denomination flag: a denomination id in hex, or a
// prefix of one.
func denomPrefix(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", cli.Usagef("--denomination ID is required")
	}
	if _, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2)); err != nil {
		return "", cli.Usagef("--denomination: not hex")
	}
	return s, nil
}

func revokeDenominationCommand(a *cli.AdminFlags) *cli.Command {
	var denom string
	return &cli.Command{
		Name:  "revoke-denomination",
		Short: "revoke a denomination while the bank runs (its key may have leaked)",
		Long: `revoke-denomination revokes a denomination key on the running bank, at
once: the change is saved in the key file, the new master-signed key set is
appended to the audit log, and from then on the bank issues none of the
denomination's coins and accepts none in payments or swaps. Wallets recoup
them ("wallet recoup"): a withdrawn coin is credited to the account that
withdrew it, a coin from a swap re-issued as new coins. Give the
denomination id (hex, from "bankd keys show --json") or a unique prefix.

The master key must be online in the bank's key file (the changed key set is
signed by it). With the master key offline, use "bankd keys revoke", sign the
key set offline and restart. Other replicas over the same database refuse
the denomination's coins as soon as this returns, and serve the revoked key
set, saved in their own key files, within seconds.`,
		Example: `bankd admin --data ./bank revoke-denomination --denomination 3f9a0c12`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&denom, "denomination", "", "the denomination `ID` (hex, or a unique prefix; required)")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			denom, err := denomPrefix(denom)
			if err != nil {
				return err
			}
			return adminCall(ctx, inv, a, func(ctx context.Context, c pb.BankAdminClient) error {
				r, err := c.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: denom})
				if err != nil {
					return fmt.Errorf("revocation refused: %w", err)
				}
				res := struct {
					Denomination string `json:"denomination"`
					Value        string `json:"value"`
				}{hex.EncodeToString(r.Denomination), r.Value}
				return inv.Print(res, func(w io.Writer) {
					fmt.Fprintf(w, "revoked %s (%s): its coins are now only recouped\n", res.Denomination, res.Value)
				})
			})
		},
	}
}
