package merchantdcmd

import (
	"context"
	"flag"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
)

// keysetHint is what serve says when the key set held stops its start.
func keysetHint(err error, data string) error {
	return cli.KeySetHint(err, merchant.ErrCorruptKeySet, "merchantd keyset --data "+data, "the next start", "restore the data directory from a backup")
}

func keysetCommand() *cli.Command {
	var (
		data string
		kf   cli.KeySetFlags
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
(after asking, or with --yes; with --sha256 HASH, only if it is still the
set of that hash, as keyset showed it); the bank's master key pinned
stays, and the next start takes the key set the bank serves, signed by
that key. The trade-off: until then the merchant cannot tell the bank's
current set from an older one it signed, so start it against a bank whose
replicas all serve the current set, and run "merchantd verify-log" soon
after, which takes a newer logged set from the audit log. Restoring the data directory from a
backup is the other way out. Drop a set that decodes only if you know why
(docs/OPERATIONS.md, "The bank's keys"): --drop warns first when it does.`,
		Example: `merchantd keyset --data ./shop
merchantd keyset --data ./shop --drop`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "", "data `DIR` of the stopped merchant (required)")
			kf.Register(fs, "the next start")
		},
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if data == "" {
				return cli.Usagef("--data DIR is required")
			}
			stopped := func(held *ecash.HeldKeySet, err error) (*ecash.HeldKeySet, error) {
				if err != nil {
					err = cli.LockHint(err, "is merchantd serving "+data+"? stop it first")
				}
				return held, err
			}
			return cli.RunKeySet(inv, &kf, func() (*ecash.HeldKeySet, error) {
				return stopped(merchant.ReadKeySet(data, nil))
			}, func(shown ecash.Hash) (*ecash.HeldKeySet, error) {
				return stopped(merchant.DropKeySet(data, nil, shown))
			})
		},
	}
}
