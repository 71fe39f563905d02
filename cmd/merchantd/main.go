// Command merchantd runs a blindbank merchant node and manages its orders.
//
//	merchantd init --data DIR
//	merchantd serve --data DIR --bank ADDR --bank-ca FILE --account ID ...
//	merchantd order --data DIR create|status|check-status ...
//	merchantd refund --data DIR --order ID --amount AMOUNT
//	merchantd settlement --data DIR FILE
//
// Run "merchantd --help" for details.
package main

import (
	"os"

	"github.com/blindbank/blindbank/cmd/internal/cli/merchantdcmd"
)

func main() { os.Exit(merchantdcmd.Main()) }
