// Command bankd runs a blindbank bank node and administers it.
//
//	bankd serve --data DIR [--listen ADDR] [--admin-listen ADDR] ...
//	bankd admin --data DIR open-account|credit|balance|owed|payout ...
//	bankd keys show|generate|sign|import|extend|prune ... --data DIR
//	bankd config check --config FILE
//
// Run "bankd --help" for details.
package main

import (
	"os"

	"github.com/blindbank/blindbank/cmd/internal/cli/bankdcmd"
)

func main() { os.Exit(bankdcmd.Main()) }
